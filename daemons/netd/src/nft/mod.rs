//! The `inet hearth` nftables table, built with the `nftnl` crate (mullvad's
//! safe wrapper over the system libnftnl) and sent as ONE batch transaction
//! over our own netlink [`Socket`].
//!
//! libnftnl encodes every message of the batch: nftnl's [`Table`], [`Chain`]
//! (hook, priority, policy, type), [`Rule`], [`Set`] and [`nftnl::Batch`]
//! types, and its expressions (meta, ct, bitwise, cmp, payload, lookup,
//! immediate verdicts, masquerade). What the crate cannot express is written
//! here as small types over `nftnl_sys` (libnftnl's own setters), never as
//! hand-made attributes:
//! * `MetaInto` and `ThDportInto`: loads into the 32-bit registers
//!   (`NFT_REG32_00` = 8 and up) that concatenated set keys need (nftnl's own
//!   expressions always load into `NFT_REG_1`);
//! * `Key`: set keys with nft's concatenated type ids and lengths
//!   (`ifname . ifname . inet_proto . inet_service` = 40 bytes, ...);
//! * `Udata`: nft's userdata TLVs (the table's comment, the `bridges` set's
//!   key byte order), set on libnftnl objects;
//! * `TableMsg`: the table message that carries the comment (nftnl's
//!   [`Table`] has no userdata), and `NFT_MSG_DESTROYTABLE`.
//!
//! The batch is `add table; delete table; add table, sets, elements, chains,
//! rules`: the kernel commits it atomically, so the old rules stay in force
//! until the new ones are, and a rejected batch leaves the old rules intact.
//!
//! Every message in the batch carries `NLM_F_ACK`, and after the batch a
//! separate `NFT_MSG_GETGEN` request is sent on the same socket: its reply
//! can only arrive after every acknowledgement of the batch, so the outcome
//! is read message by message and never assumed (kernels before 6.10 do not
//! acknowledge the batch-begin/-end messages themselves). The sequence
//! numbers nftnl gave the messages are read back from the finished batch.
//!
//! Reading the table back ([`read_state`], [`is_current`]) and the watcher
//! parse the kernel's messages with [`crate::netlink`].
//!
//! The modules, one idea each:
//! * [`ruleset`]: the pure part: the model as a [`Ruleset`], and the ruleset
//!   as set elements and rules (expressions in order); unit-tested;
//! * `ffi`: the shims over `nftnl_sys` listed above, the one module
//!   besides [`crate::netlink`] with `unsafe` code;
//! * `batch`: the batch, the transaction and its outcome ([`apply`],
//!   [`delete_table`]);
//! * `readback`: reading the table back ([`read_state`], [`is_current`]).
//!
//! Rules are a constant number per chain plus one NAT rule per domain; the
//! pairs live in sets keyed by concatenations (`iifname . oifname [. l4proto
//! [. th dport]]`), so the rule count never grows with the number of pairs.
//!
//! Hooks and priorities (see docs/decisions/010-netd-nftables.md):
//! * `forward`, filter hook forward, priority 0, policy accept, ending in
//!   explicit drops for anything entering or leaving a domain bridge;
//! * `input`, filter hook input, priority 0, policy accept, ending in a drop
//!   for anything from a domain bridge that is not an allowed service;
//! * `postrouting`, nat hook postrouting, priority 100 (srcnat): masquerade.
//!
//! A drop here is final whatever other tables decide: an accept in another
//! table's base chain only ends that chain, the packet still traverses ours.
//!

use std::ffi::CStr;

use crate::error::NetError;

mod batch;
mod ffi;
mod readback;
pub mod ruleset;

pub use batch::{apply, apply_with_bogus_rule, delete_table, is_own_sender, ApplyReport};
pub use readback::{is_current, read_state, TableState};
pub use ruleset::Ruleset;

/// The table's name (family inet).
pub const TABLE: &str = "hearth";
const TABLE_C: &CStr = c"hearth";
/// `NFPROTO_INET`.
pub const FAMILY_INET: u8 = 1;

const NFNL_SUBSYS_NFTABLES: u16 = 10;

/// nf_tables message types.
pub mod msg {
    /// NFT_MSG_NEWTABLE.
    pub const NEWTABLE: u16 = 0;
    /// NFT_MSG_GETTABLE.
    pub const GETTABLE: u16 = 1;
    /// NFT_MSG_DELTABLE.
    pub const DELTABLE: u16 = 2;
    /// NFT_MSG_NEWCHAIN.
    pub const NEWCHAIN: u16 = 3;
    /// NFT_MSG_DELCHAIN.
    pub const DELCHAIN: u16 = 5;
    /// NFT_MSG_NEWRULE.
    pub const NEWRULE: u16 = 6;
    /// NFT_MSG_GETRULE.
    pub const GETRULE: u16 = 7;
    /// NFT_MSG_DELRULE.
    pub const DELRULE: u16 = 8;
    /// NFT_MSG_NEWSET.
    pub const NEWSET: u16 = 9;
    /// NFT_MSG_DELSET.
    pub const DELSET: u16 = 11;
    /// NFT_MSG_NEWSETELEM.
    pub const NEWSETELEM: u16 = 12;
    /// NFT_MSG_GETSETELEM.
    pub const GETSETELEM: u16 = 13;
    /// NFT_MSG_DELSETELEM.
    pub const DELSETELEM: u16 = 14;
    /// NFT_MSG_NEWGEN.
    pub const NEWGEN: u16 = 15;
    /// NFT_MSG_GETGEN.
    pub const GETGEN: u16 = 16;
    /// NFT_MSG_DESTROYTABLE.
    pub const DESTROYTABLE: u16 = 26;
}

/// The full netlink message type of nf_tables message `m`.
pub fn nft_type(m: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | m
}

/// The nfnetlink subsystem of a message type.
pub fn subsys(ty: u16) -> u16 {
    ty >> 8
}

/// The sets of the table.
pub const SETS: [&str; 5] = [
    "bridges",
    "allow_any",
    "allow_proto",
    "allow_port",
    "services",
];
/// The chains of the table.
pub const CHAINS: [&str; 3] = ["forward", "input", "postrouting"];

/// The nfgenmsg header: family, version 0, resource id.
fn nfgenmsg(family: u8, res_id: u16) -> [u8; 4] {
    let r = res_id.to_be_bytes();
    [family, 0, r[0], r[1]]
}

fn nft_err(m: impl Into<String>) -> NetError {
    NetError::Nft(m.into())
}
