//! The README's demo runs in the tests: the walkthrough (a sentence to a DNS
//! answer, a new domain and an opened port, a certificate checked by
//! openssl, a camera getting an address and a name, then a reserved one
//! asked for in words, hearth-verify trusting the appliance) against a
//! fresh sandbox.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use hearth_testbed::{Options, Sandbox};

#[test]
fn the_demo_walkthrough_runs_against_a_fresh_sandbox() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = Options::for_tests(&tmp.path().join("sb"));
    let sb = Sandbox::up(&opts).unwrap_or_else(|e| panic!("sandbox up: {e:#}"));
    assert_eq!(sb.daemons.len(), 6, "every daemon is part of the demo");
    let out = Command::new(sb.repo.join("scripts/demo-walkthrough"))
        .current_dir(&sb.repo)
        .envs(&sb.env)
        .env("HEARTH_BIN", &opts.bin_dir)
        .output()
        .unwrap();
    let said = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the walkthrough failed:\n{said}");
    assert!(said.contains("192.168.1.100"), "{said}");
    assert!(said.contains(": OK"), "openssl verify said OK:\n{said}");
    assert!(said.contains("Demo complete"), "{said}");
    assert!(
        said.contains("doorcam.cams.home.arpa"),
        "a client joined cams and got a name:\n{said}"
    );
    // Reserved and released through the gate, in words, by host name and
    // by MAC; an address outside the domain refused by hearth-dhcpd.
    assert!(
        said.contains("Reserves ")
            && said.contains("is not a host address of the device's domain cams")
            && said.contains("Releases the reservation of ")
            && said.contains("LAST SEEN"),
        "the dhcp playbooks ran through the gate:\n{said}"
    );
    // The plans show the daemons' own account of the change, and a trial
    // lapses and is reverted.
    assert!(
        said.contains("Opens lan → cams tcp/554.")
            && said.contains("Deletes domain cams (bridge hb-cams")
            && said.contains("On trial: reverted automatically in ")
            && said.contains("hearth-intentd reverted guest -> cams by itself"),
        "previews and a trial:\n{said}"
    );
    // hearth-verify's report lists every Hearth binary, measured at start.
    for bin in [
        "hearth-pkid",
        "hearth-attestd",
        "hearth-netd",
        "hearth-dnsd",
        "hearth-dhcpd",
        "hearth-intentd",
        "hearthctl",
    ] {
        let name = format!("binary            {}  ", sb.bin_dir.join(bin).display());
        assert!(said.contains(&name), "{bin} measured:\n{said}");
    }
}
