//! The network namespace with its veth uplink, which hearth-netd manages
//! so the host's networking is never touched.

use super::*;

/// The uplink inside the namespace (one end of a veth pair).
pub const UPLINK: &str = "hup0";

impl Sandbox {
    pub(crate) fn make_netns(&mut self) -> Result<()> {
        run(Command::new("ip").args(["netns", "add", &self.netns]))?;
        fs::write(self.dir.join("netns"), &self.netns)?;
        self.env.insert("HEARTH_NETNS".into(), self.netns.clone());
        run(Command::new("ip").args(["-n", &self.netns, "link", "set", "lo", "up"]))?;
        // A veth pair stands for the uplink (the dummy driver is not in
        // every kernel); its peer stays unconfigured in the namespace.
        run(Command::new("ip").args([
            "-n",
            &self.netns,
            "link",
            "add",
            UPLINK,
            "type",
            "veth",
            "peer",
            "name",
            "hup0p",
        ]))?;
        run(Command::new("ip").args(["-n", &self.netns, "link", "set", UPLINK, "up"]))?;
        Ok(())
    }
}
