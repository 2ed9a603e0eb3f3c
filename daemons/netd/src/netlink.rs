//! Raw netlink for nf_tables: a socket, a message builder and an attribute
//! parser.
//!
//! With the `ffi` shims of [`crate::nft`] (libnftnl's C calls), one of the
//! two modules of hearth-netd with `unsafe` code: here the socket system
//! calls, `setns` and a receive timeout. The nftables side ([`crate::nft`], whose
//! batch messages nftnl builds, and the watcher) builds and parses byte
//! buffers through the safe API here; the rtnetlink side
//! ([`crate::links`]) uses netlink-packet-route and netlink-sys instead,
//! and only [`kernel_error`], [`align`] and [`set_recv_timeout`] from here.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// `NETLINK_NETFILTER`.
pub const NETLINK_NETFILTER: i32 = 12;

/// `NLM_F_REQUEST`.
pub const F_REQUEST: u16 = 0x1;
/// `NLM_F_ACK`.
pub const F_ACK: u16 = 0x4;
/// `NLM_F_DUMP`.
pub const F_DUMP: u16 = 0x300;
/// `NLM_F_CREATE`.
pub const F_CREATE: u16 = 0x400;
/// `NLM_F_ACK_TLVS` (set by the kernel on an error carrying extended ack).
const F_ACK_TLVS: u16 = 0x200;

/// `NLMSG_ERROR`.
pub const MSG_ERROR: u16 = 2;
/// `NLMSG_DONE`.
pub const MSG_DONE: u16 = 3;

const NLA_TYPE_MASK: u16 = 0x3fff;
const NLMSGERR_ATTR_MSG: u16 = 1;

const SOL_NETLINK: i32 = 270;
const NETLINK_ADD_MEMBERSHIP: i32 = 1;
const NETLINK_CAP_ACK: i32 = 10;
const NETLINK_EXT_ACK: i32 = 11;

/// Rounds up to netlink's 4-byte alignment.
pub fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// A netlink socket bound to the network namespace of the thread that opened it.
#[derive(Debug)]
pub struct Socket {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl Socket {
    /// Opens a netlink socket of `protocol` with extended and capped acks.
    pub fn open(protocol: i32) -> io::Result<Socket> {
        // SAFETY: plain system call with constant arguments; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                protocol,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by socket() and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_nl is plain old data; all-zero is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: `addr` is a valid sockaddr_nl and the length matches it.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let s = Socket {
            fd,
            seq: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as u32)
                .unwrap_or(1),
            buf: vec![0; 1 << 20],
        };
        s.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)?;
        s.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)?;
        // Large buffers: a batch for hundreds of domains, and bursts of
        // notifications. FORCE needs CAP_NET_ADMIN; fall back silently.
        for (force, plain) in [
            (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
            (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
        ] {
            if s.setsockopt(libc::SOL_SOCKET, force, 16 << 20).is_err() {
                let _ = s.setsockopt(libc::SOL_SOCKET, plain, 4 << 20);
            }
        }
        Ok(s)
    }

    fn setsockopt(&self, level: i32, name: i32, value: i32) -> io::Result<()> {
        // SAFETY: `value` outlives the call and the length is that of an i32.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (&value as *const i32).cast(),
                std::mem::size_of::<i32>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Joins the multicast group `group`.
    pub fn subscribe(&self, group: i32) -> io::Result<()> {
        self.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
    }

    /// The next sequence number.
    pub fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Sends `data` (one or more messages) to the kernel in one datagram.
    pub fn send(&self, data: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_nl is plain old data; all-zero addresses the kernel.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        loop {
            // SAFETY: `data` and `addr` are valid for the lengths given.
            let rc = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    data.as_ptr().cast(),
                    data.len(),
                    0,
                    (&addr as *const libc::sockaddr_nl).cast(),
                    std::mem::size_of::<libc::sockaddr_nl>() as u32,
                )
            };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if rc as usize != data.len() {
                return Err(io::Error::other("short netlink send"));
            }
            return Ok(());
        }
    }

    /// Waits up to `timeout` (forever when `None`) for a datagram and returns
    /// it; `Ok(None)` on timeout.
    pub fn recv(&mut self, timeout: Option<Duration>) -> io::Result<Option<&[u8]>> {
        if let Some(t) = timeout {
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = t.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    return Ok(None);
                }
                return Err(e);
            }
            if rc == 0 {
                return Ok(None);
            }
        }
        loop {
            // SAFETY: the buffer is valid for its length.
            let rc = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                )
            };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            return Ok(Some(&self.buf[..rc as usize]));
        }
    }

    /// Sends one request message (already carrying `seq`) with `NLM_F_ACK`
    /// and waits for its acknowledgement.
    pub fn request(&mut self, msg: &[u8], seq: u32) -> Result<(), NlError> {
        self.send(msg).map_err(NlError::Io)?;
        loop {
            let data = match self
                .recv(Some(Duration::from_secs(5)))
                .map_err(NlError::Io)?
            {
                Some(d) => d,
                None => return Err(NlError::Io(io::Error::other("no netlink reply in 5 s"))),
            };
            for m in Messages::new(data) {
                if m.seq != seq {
                    continue;
                }
                if m.ty == MSG_ERROR {
                    return match parse_error(&m) {
                        None => Ok(()),
                        Some(e) => Err(e),
                    };
                }
            }
        }
    }

    /// Sends a dump request (already carrying `seq`) and returns the payloads
    /// (family header included) of every reply message of type `want`.
    pub fn dump(&mut self, msg: &[u8], seq: u32, want: u16) -> Result<Vec<Vec<u8>>, NlError> {
        self.send(msg).map_err(NlError::Io)?;
        let mut out = Vec::new();
        loop {
            let data = match self
                .recv(Some(Duration::from_secs(5)))
                .map_err(NlError::Io)?
            {
                Some(d) => d,
                None => return Err(NlError::Io(io::Error::other("no netlink reply in 5 s"))),
            };
            for m in Messages::new(data) {
                if m.seq != seq {
                    continue;
                }
                match m.ty {
                    MSG_DONE => return Ok(out),
                    MSG_ERROR => {
                        return match parse_error(&m) {
                            None => Ok(out),
                            Some(e) => Err(e),
                        }
                    }
                    t if t == want => out.push(m.payload.to_vec()),
                    _ => {}
                }
            }
        }
    }
}

/// A failed netlink request.
#[derive(Debug, thiserror::Error)]
pub enum NlError {
    /// The kernel refused: errno and its extended-ack message if any.
    #[error("{}{}", std::io::Error::from_raw_os_error(*.errno), .message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Kernel {
        /// The positive errno.
        errno: i32,
        /// The kernel's extended-ack text.
        message: Option<String>,
    },
    /// The socket failed.
    #[error("netlink socket: {0}")]
    Io(io::Error),
}

impl NlError {
    /// The errno of a kernel refusal.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NlError::Kernel { errno, .. } => Some(*errno),
            NlError::Io(e) => e.raw_os_error(),
        }
    }
}

/// Parses an `NLMSG_ERROR` message: `None` for a success ack.
pub fn parse_error(m: &Message<'_>) -> Option<NlError> {
    let p = m.payload;
    if p.len() < 4 {
        return Some(NlError::Io(io::Error::other("truncated netlink error")));
    }
    let code = i32::from_ne_bytes([p[0], p[1], p[2], p[3]]);
    if code == 0 {
        return None;
    }
    Some(kernel_error(code, m.flags, &p[4..]))
}

/// The refusal in an `NLMSG_ERROR` (or a failed `NLMSG_DONE`) of flags
/// `flags` whose negative errno is `code`; `rest` is what follows the code.
/// With `NLM_F_ACK_TLVS` set, the kernel's extended-ack text is taken from
/// the TLVs after the original header (the request itself is not echoed
/// back thanks to `NETLINK_CAP_ACK`). netlink-packet-core hands these bytes
/// over unparsed, so the rtnetlink side of [`crate::links`] uses this too.
pub fn kernel_error(code: i32, flags: u16, rest: &[u8]) -> NlError {
    let mut message = None;
    if flags & F_ACK_TLVS != 0 && rest.len() >= 16 {
        for (ty, v) in Attrs::new(&rest[16..]) {
            if ty == NLMSGERR_ATTR_MSG {
                message = Some(attr_str(v));
            }
        }
    }
    NlError::Kernel {
        errno: -code,
        message,
    }
}

/// One netlink message as received.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// `nlmsg_type`.
    pub ty: u16,
    /// `nlmsg_flags`.
    pub flags: u16,
    /// `nlmsg_seq`.
    pub seq: u32,
    /// `nlmsg_pid`.
    pub pid: u32,
    /// Everything after the 16-byte header.
    pub payload: &'a [u8],
}

/// Iterator over the messages of one datagram.
pub struct Messages<'a> {
    data: &'a [u8],
}

impl<'a> Messages<'a> {
    /// Iterates the messages in `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Messages { data }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Message<'a>;
    fn next(&mut self) -> Option<Message<'a>> {
        let d = self.data;
        if d.len() < 16 {
            return None;
        }
        let len = u32::from_ne_bytes([d[0], d[1], d[2], d[3]]) as usize;
        if len < 16 || len > d.len() {
            self.data = &[];
            return None;
        }
        let m = Message {
            ty: u16::from_ne_bytes([d[4], d[5]]),
            flags: u16::from_ne_bytes([d[6], d[7]]),
            seq: u32::from_ne_bytes([d[8], d[9], d[10], d[11]]),
            pid: u32::from_ne_bytes([d[12], d[13], d[14], d[15]]),
            payload: &d[16..len],
        };
        self.data = &d[align(len).min(d.len())..];
        Some(m)
    }
}

/// Iterator over netlink attributes: (type without flags, value).
pub struct Attrs<'a> {
    data: &'a [u8],
}

impl<'a> Attrs<'a> {
    /// Iterates the attributes in `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Attrs { data }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = (u16, &'a [u8]);
    fn next(&mut self) -> Option<(u16, &'a [u8])> {
        let d = self.data;
        if d.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([d[0], d[1]]) as usize;
        let ty = u16::from_ne_bytes([d[2], d[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > d.len() {
            self.data = &[];
            return None;
        }
        self.data = &d[align(len).min(d.len())..];
        Some((ty, &d[4..len]))
    }
}

/// Finds attribute `ty` in `data`.
pub fn find_attr(data: &[u8], ty: u16) -> Option<&[u8]> {
    Attrs::new(data).find(|(t, _)| *t == ty).map(|(_, v)| v)
}

/// A NUL-terminated (or not) string attribute.
pub fn attr_str(v: &[u8]) -> String {
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

/// A big-endian u32 attribute.
pub fn attr_be32(v: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
}

/// Builds one or more netlink messages in one buffer.
#[derive(Debug, Default, Clone)]
pub struct MsgBuf {
    buf: Vec<u8>,
}

impl MsgBuf {
    /// An empty buffer.
    pub fn new() -> Self {
        MsgBuf::default()
    }

    /// Starts a message; returns its offset for [`MsgBuf::end`].
    pub fn begin(&mut self, ty: u16, flags: u16, seq: u32) -> usize {
        let off = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        off
    }

    /// Ends the message started at `off`.
    pub fn end(&mut self, off: usize) {
        let len = (self.buf.len() - off) as u32;
        self.buf[off..off + 4].copy_from_slice(&len.to_ne_bytes());
    }

    /// Appends raw bytes (a family header), padded to alignment.
    pub fn raw(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    /// Appends an attribute.
    pub fn attr(&mut self, ty: u16, value: &[u8]) {
        let len = (4 + value.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.pad();
    }

    /// Appends a NUL-terminated string attribute.
    pub fn attr_str(&mut self, ty: u16, s: &str) {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.attr(ty, &v);
    }

    /// The bytes built so far.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Bytes built so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when nothing was built.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Makes reads on the socket `fd` fail with `WouldBlock` after `timeout`
/// without data (`SO_RCVTIMEO`).
pub fn set_recv_timeout(fd: &impl AsFd, timeout: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: `tv` outlives the call and the length is that of a timeval.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread's kernel thread id.
pub fn gettid() -> i32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::gettid() }
}

/// Moves the calling thread into the network namespace `ns` (a file such
/// as `/run/netns/<name>`). Threads it spawns afterwards inherit it, and
/// sockets it opens belong to it.
pub fn enter_netns(ns: &File) -> io::Result<()> {
    // SAFETY: a valid open descriptor and the CLONE_NEWNET constant.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_and_parser_round_trip() {
        let mut b = MsgBuf::new();
        let m = b.begin(16, F_REQUEST, 7);
        b.raw(&[1, 2, 3]);
        b.attr_str(3, "hb-lan");
        let mut inner = MsgBuf::new();
        inner.attr_str(1, "bridge");
        b.attr(18 | 0x8000, inner.bytes());
        b.end(m);
        let msgs: Vec<_> = Messages::new(b.bytes()).collect();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].ty, 16);
        assert_eq!(msgs[0].seq, 7);
        let attrs: Vec<_> = Attrs::new(&msgs[0].payload[4..]).collect();
        assert_eq!(attrs.len(), 2);
        assert_eq!(attr_str(attrs[0].1), "hb-lan");
        assert_eq!(attrs[1].0, 18, "the nested flag is masked off");
        assert_eq!(attr_str(find_attr(attrs[1].1, 1).unwrap()), "bridge");
    }
}
