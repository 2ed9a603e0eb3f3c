//! Atomic state files: write to a temporary file beside the target, fsync it,
//! rename it over the target, fsync the directory. A reader sees the old or
//! the new content, never a mix, even across a power cut.
//!
//! The temporary file has an unpredictable name and is created with
//! `O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC`: a file or symbolic link that
//! someone planted beside the target is never opened, followed or reused.
//! Its mode is set to the one asked for whatever the umask, so the result
//! has exactly that mode.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// `O_NOFOLLOW` of Linux; its value depends on the architecture.
#[cfg(any(
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "powerpc",
    target_arch = "powerpc64"
))]
const O_NOFOLLOW: i32 = 0o100000;
#[cfg(not(any(
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "powerpc",
    target_arch = "powerpc64"
)))]
const O_NOFOLLOW: i32 = 0o400000;

/// `O_CLOEXEC` of Linux (the standard library sets it as well).
#[cfg(any(target_arch = "sparc", target_arch = "sparc64"))]
const O_CLOEXEC: i32 = 0o20000000;
#[cfg(not(any(target_arch = "sparc", target_arch = "sparc64")))]
const O_CLOEXEC: i32 = 0o2000000;

/// How many unpredictable names are tried before giving up.
const ATTEMPTS: usize = 16;

/// A temporary path beside the target `name` in `dir`, with 128 random bits
/// from the kernel in its name.
fn temp_path(dir: &Path, name: &OsStr) -> std::io::Result<PathBuf> {
    let mut random = [0u8; 16];
    File::open("/dev/urandom")?.read_exact(&mut random)?;
    let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
    Ok(dir.join(format!(".{}.tmp.{suffix}", name.to_string_lossy())))
}

/// Creates a new temporary file beside `name` in `dir` with `mode`; never
/// opens an existing file or follows a link.
fn create_temp(dir: &Path, name: &OsStr, mode: u32) -> std::io::Result<(PathBuf, File)> {
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let tmp = temp_path(dir, name)?;
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(O_NOFOLLOW | O_CLOEXEC)
            .mode(mode)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no temporary name was free")))
}

/// Writes `data` to `path` atomically with the given file mode.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other(format!("{}: not a file path", path.display())))?;
    let (tmp, mut f) = create_temp(dir, name, mode)?;
    let result = (|| {
        // The umask may have narrowed the mode given at creation.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Serializes `value` as pretty JSON and writes it atomically (mode 0600).
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let mut data = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    data.push(b'\n');
    write_atomic(path, &data, 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_content_and_sets_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let left: Vec<_> = fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn a_symlink_at_the_old_predictable_temp_path_is_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        let victim = d.path().join("victim");
        fs::write(&victim, b"untouched").unwrap();
        let predictable = d
            .path()
            .join(format!(".state.json.tmp.{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &predictable).unwrap();
        write_atomic(&p, b"new", 0o600).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"untouched");
        assert_eq!(fs::read(&p).unwrap(), b"new");
        assert!(
            fs::symlink_metadata(&p).unwrap().file_type().is_file(),
            "the target is a regular file, not the planted link"
        );
    }

    #[test]
    fn the_result_has_the_requested_mode_whatever_was_there() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        // An old target and a stale temporary file (the old name) with
        // another, wider mode.
        fs::write(&p, b"old").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o666)).unwrap();
        let stale = d
            .path()
            .join(format!(".state.json.tmp.{}", std::process::id()));
        fs::write(&stale, b"stale").unwrap();
        fs::set_permissions(&stale, fs::Permissions::from_mode(0o666)).unwrap();
        write_atomic(&p, b"new", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
            0o600
        );
        // A mode wider than the umask would give is set as asked.
        write_atomic(&p, b"shared", 0o664).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
            0o664
        );
    }

    #[test]
    fn temporary_names_are_unpredictable() {
        let d = tempfile::tempdir().unwrap();
        let a = temp_path(d.path(), std::ffi::OsStr::new("x")).unwrap();
        let b = temp_path(d.path(), std::ffi::OsStr::new("x")).unwrap();
        assert_ne!(a, b);
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(".x.tmp."), "{name}");
        assert!(!name.contains(&std::process::id().to_string()), "{name}");
    }

    #[test]
    fn the_nofollow_flag_is_this_kernels() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("target");
        fs::write(&target, b"x").unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let opened = OpenOptions::new()
            .read(true)
            .custom_flags(O_NOFOLLOW)
            .open(&link);
        assert!(opened.is_err(), "a link was followed despite O_NOFOLLOW");
        OpenOptions::new()
            .read(true)
            .custom_flags(O_NOFOLLOW | O_CLOEXEC)
            .open(&target)
            .unwrap();
    }

    #[test]
    fn failure_leaves_old_content() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        write_atomic(&p, b"old", 0o600).unwrap();
        // A directory in the way of the rename makes the write fail.
        let blocked = d.path().join("dir");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("x"), b"x").unwrap();
        assert!(write_atomic(&blocked, b"new", 0o600).is_err());
        assert_eq!(fs::read(&p).unwrap(), b"old");
    }
}
