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
//! The one module besides [`crate::netlink`] with `unsafe` code: the calls
//! into libnftnl for what nftnl does not wrap.
#![allow(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{c_void, CStr, CString};
use std::net::{IpAddr, Ipv4Addr};
use std::ptr::NonNull;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nftnl::expr::{
    Bitwise, Cmp, CmpOp, Conntrack, Expression, Ipv4HeaderField, Lookup, Masquerade, Meta,
    NetworkHeaderField, Payload, Verdict,
};
use nftnl::nftnl_sys as sys;
use nftnl::set::{Set, SetKey};
use nftnl::{Chain, ChainType, Hook, MsgType, NlMsg, Policy, ProtoFamily, Rule, Table};
use serde::Serialize;

use crate::error::NetError;
use crate::model::Model;
use crate::netlink::{self as nl, MsgBuf, Socket};

/// The table's name (family inet).
pub const TABLE: &str = "hearth";
const TABLE_C: &CStr = c"hearth";
/// `NFPROTO_INET`.
pub const FAMILY_INET: u8 = 1;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;

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

// Attributes read back from the kernel (building is libnftnl's).
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_USERDATA: u16 = 6;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_GEN_ID: u16 = 1;

/// `NFPROTO_IPV4`, as `meta nfproto` loads it (one byte).
const NFPROTO_IPV4: u8 = 2;
/// ct state established (bit 1) | related (bit 2).
const CT_ESTABLISHED_RELATED: u32 = 0x2 | 0x4;
/// `NFT_PAYLOAD_TRANSPORT_HEADER`.
const NFT_PAYLOAD_TRANSPORT: u32 = 2;

// The 4-byte registers NFT_REG32_xx that concatenations are loaded into:
// NFT_REG32_00 (8) is the first quarter of NFT_REG_1.
const REG32_00: u32 = 8;
const R8: u32 = REG32_00;
const R12: u32 = REG32_00 + 4;
const R13: u32 = REG32_00 + 5;
const R16: u32 = REG32_00 + 8;
const R17: u32 = REG32_00 + 9;

// nft's datatype ids, for `nft list` to print the sets' key types.
const TYPE_INET_PROTOCOL: u32 = 12;
const TYPE_INET_SERVICE: u32 = 13;
const TYPE_IFNAME: u32 = 41;
const fn concat(types: &[u32]) -> u32 {
    let mut acc = 0;
    let mut i = 0;
    while i < types.len() {
        acc = (acc << 6) | types[i];
        i += 1;
    }
    acc
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

/// Everything the table enforces, derived from the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ruleset {
    /// Every domain bridge.
    pub bridges: Vec<String>,
    /// The admin domain's bridge.
    pub admin: String,
    /// The uplink.
    pub uplink: Option<String>,
    /// (from bridge, to bridge): everything.
    pub allow_any: Vec<(String, String)>,
    /// (from, to, l4proto): one protocol.
    pub allow_proto: Vec<(String, String, u8)>,
    /// (from, to, l4proto, port).
    pub allow_port: Vec<(String, String, u8, u16)>,
    /// (bridge, l4proto, port) of appliance services.
    pub services: Vec<(String, u8, u16)>,
    /// Domain subnets masqueraded to the uplink.
    pub nat: Vec<(Ipv4Addr, u8)>,
}

impl Ruleset {
    /// Derives the ruleset from the model.
    pub fn from_model(m: &Model) -> Ruleset {
        let br = |d: &hearth_common::types::DomainId| d.bridge_name();
        let mut rs = Ruleset {
            bridges: m.domains.keys().map(br).collect(),
            admin: br(&m.admin),
            uplink: m.uplink.clone(),
            allow_any: Vec::new(),
            allow_proto: Vec::new(),
            allow_port: Vec::new(),
            services: Vec::new(),
            nat: Vec::new(),
        };
        for a in &m.allows {
            let (f, t) = (br(&a.from), br(&a.to));
            match (a.protocol, a.port) {
                (None, None) => rs.allow_any.push((f, t)),
                (Some(p), None) => rs.allow_proto.push((f, t, p.number())),
                (Some(p), Some(port)) => rs.allow_port.push((f, t, p.number(), port.get())),
                (None, Some(port)) => {
                    rs.allow_port.push((f.clone(), t.clone(), 6, port.get()));
                    rs.allow_port.push((f, t, 17, port.get()));
                }
            }
        }
        for d in m.domains.values() {
            for s in &d.service_ports {
                rs.services.push((d.bridge(), s.protocol.number(), s.port));
            }
            if let (IpAddr::V4(net), Some(_)) = (d.subnet.net().network(), &m.uplink) {
                rs.nat.push((net, d.subnet.prefix_len()));
            }
        }
        rs.allow_any.sort();
        rs.allow_any.dedup();
        rs.allow_proto.sort();
        rs.allow_proto.dedup();
        rs.allow_port.sort();
        rs.allow_port.dedup();
        rs.services.sort();
        rs.services.dedup();
        rs
    }

    /// A fingerprint of the ruleset, stored as the table's comment.
    pub fn fingerprint(&self) -> String {
        // FNV-1a over the canonical JSON form.
        let text = serde_json::to_string(self).unwrap_or_default();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in text.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }

    /// Number of set elements per set, in [`SETS`] order.
    pub fn element_counts(&self) -> [usize; 5] {
        [
            self.bridges.len(),
            self.allow_any.len(),
            self.allow_proto.len(),
            self.allow_port.len(),
            self.services.len(),
        ]
    }

    /// Number of rules per chain, in [`CHAINS`] order.
    pub fn rule_counts(&self) -> [usize; 3] {
        let up = usize::from(self.uplink.is_some());
        [7 + up, 5, if up == 1 { self.nat.len() } else { 0 }]
    }

    /// Total rules.
    pub fn rule_count(&self) -> usize {
        self.rule_counts().iter().sum()
    }
}

/// What one apply did.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    /// Messages in the batch (begin and end excluded).
    pub messages: usize,
    /// Bytes sent.
    pub bytes: usize,
    /// Rules in the new table.
    pub rules: usize,
    /// Set elements in the new table.
    pub elements: usize,
    /// The generation after the commit.
    pub generation: u32,
    /// Wall time from building the batch to reading its outcome.
    pub micros: u128,
}

static OWN_TIDS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// True when thread `tid` of this process sent an nftables batch: the
/// watcher uses it to tell our transactions from other programs'.
pub fn is_own_tid(tid: i32) -> bool {
    OWN_TIDS.lock().map(|v| v.contains(&tid)).unwrap_or(false)
}

fn remember_tid() {
    let tid = nl::gettid();
    if let Ok(mut v) = OWN_TIDS.lock() {
        if !v.contains(&tid) {
            if v.len() >= 256 {
                v.remove(0);
            }
            v.push(tid);
        }
    }
}

fn ifname(name: &str) -> [u8; 16] {
    let mut b = [0u8; 16];
    let n = name.len().min(15);
    b[..n].copy_from_slice(&name.as_bytes()[..n]);
    b
}

fn u8_reg(v: u8) -> [u8; 4] {
    [v, 0, 0, 0]
}

fn port_reg(p: u16) -> [u8; 4] {
    let be = p.to_be_bytes();
    [be[0], be[1], 0, 0]
}

fn nfgenmsg(family: u8, res_id: u16) -> [u8; 4] {
    let r = res_id.to_be_bytes();
    [family, 0, r[0], r[1]]
}

/// Aborts like nftnl does when libnftnl cannot allocate (the objects are a
/// few bytes: only an exhausted heap fails, and there is no recovering).
fn alloc_or_abort<T>(p: *mut T) -> NonNull<T> {
    NonNull::new(p).unwrap_or_else(|| std::process::abort())
}

fn expr(name: &CStr) -> NonNull<sys::nftnl_expr> {
    // SAFETY: `name` is a NUL-terminated expression name libnftnl knows.
    alloc_or_abort(unsafe { sys::nftnl_expr_alloc(name.as_ptr()) })
}

/// `meta <key>` loaded into register `dreg` (nftnl's [`Meta`] always loads
/// into `NFT_REG_1`; concatenations need the following 32-bit registers).
struct MetaInto(Meta, u32);

impl Expression for MetaInto {
    fn to_expr(&self, _rule: &Rule) -> NonNull<sys::nftnl_expr> {
        let e = expr(c"meta");
        // SAFETY: `e` is a live meta expression; both attributes are u32s.
        unsafe {
            sys::nftnl_expr_set_u32(
                e.as_ptr(),
                sys::NFTNL_EXPR_META_KEY as u16,
                self.0.to_raw_key(),
            );
            sys::nftnl_expr_set_u32(e.as_ptr(), sys::NFTNL_EXPR_META_DREG as u16, self.1);
        }
        e
    }
}

/// `th dport` (2 bytes at offset 2 of the transport header) loaded into
/// register `.0`.
struct ThDportInto(u32);

impl Expression for ThDportInto {
    fn to_expr(&self, _rule: &Rule) -> NonNull<sys::nftnl_expr> {
        let e = expr(c"payload");
        // SAFETY: `e` is a live payload expression; all attributes are u32s.
        unsafe {
            let p = e.as_ptr();
            sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_PAYLOAD_DREG as u16, self.0);
            sys::nftnl_expr_set_u32(
                p,
                sys::NFTNL_EXPR_PAYLOAD_BASE as u16,
                NFT_PAYLOAD_TRANSPORT,
            );
            sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_PAYLOAD_OFFSET as u16, 2);
            sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_PAYLOAD_LEN as u16, 2);
        }
        e
    }
}

/// A set key of nft datatype `TYPE` (concatenations: the types shifted by 6
/// bits each, as nft computes them) and `LEN` bytes (each field of a
/// concatenation padded to 4 bytes).
struct Key<const TYPE: u32, const LEN: u32>(Vec<u8>);

impl<const TYPE: u32, const LEN: u32> SetKey for Key<TYPE, LEN> {
    const TYPE: u32 = TYPE;
    const LEN: u32 = LEN;

    fn data(&self) -> Box<[u8]> {
        self.0.clone().into_boxed_slice()
    }
}

/// `ifname`.
type IfKey = Key<TYPE_IFNAME, 16>;
/// `ifname . ifname`.
type AnyKey = Key<{ concat(&[TYPE_IFNAME, TYPE_IFNAME]) }, 32>;
/// `ifname . ifname . inet_proto`.
type ProtoKey = Key<{ concat(&[TYPE_IFNAME, TYPE_IFNAME, TYPE_INET_PROTOCOL]) }, 36>;
/// `ifname . ifname . inet_proto . inet_service`.
type PortKey = Key<
    {
        concat(&[
            TYPE_IFNAME,
            TYPE_IFNAME,
            TYPE_INET_PROTOCOL,
            TYPE_INET_SERVICE,
        ])
    },
    40,
>;
/// `ifname . inet_proto . inet_service`.
type ServiceKey = Key<{ concat(&[TYPE_IFNAME, TYPE_INET_PROTOCOL, TYPE_INET_SERVICE]) }, 24>;

/// nft's userdata TLVs, built by libnftnl (`nftnl_udata_*`).
struct Udata(NonNull<sys::nftnl_udata_buf>);

impl Udata {
    fn new() -> Udata {
        // SAFETY: plain allocation; the result is checked.
        Udata(alloc_or_abort(unsafe {
            sys::nftnl_udata_buf_alloc(sys::NFTNL_UDATA_COMMENT_MAXLEN + 16)
        }))
    }

    /// Adds a NUL-terminated string TLV; false when it does not fit.
    fn put_strz(&mut self, ty: u32, s: &CStr) -> bool {
        // SAFETY: the buffer is live and `s` is NUL-terminated.
        unsafe { sys::nftnl_udata_put_strz(self.0.as_ptr(), ty as u8, s.as_ptr()) }
    }

    /// Adds a u32 TLV (host byte order, as nft writes it).
    fn put_u32(&mut self, ty: u32, v: u32) -> bool {
        // SAFETY: the buffer is live.
        unsafe { sys::nftnl_udata_put_u32(self.0.as_ptr(), ty as u8, v) }
    }

    /// The TLVs: pointer and length, valid while `self` lives (libnftnl
    /// copies them into the object they are set on).
    fn data(&self) -> (*const c_void, u32) {
        // SAFETY: the buffer is live.
        unsafe {
            (
                sys::nftnl_udata_buf_data(self.0.as_ptr()),
                sys::nftnl_udata_buf_len(self.0.as_ptr()),
            )
        }
    }
}

impl Drop for Udata {
    fn drop(&mut self) {
        // SAFETY: allocated by nftnl_udata_buf_alloc, freed once.
        unsafe { sys::nftnl_udata_buf_free(self.0.as_ptr()) }
    }
}

/// nft's `NFT_BYTEORDER_HOST`: the key is a string, so `nft list` prints
/// the names of an `ifname` set.
const BYTEORDER_HOST: u32 = 1;

/// Marks the keys of `set` as host byte order (set userdata).
fn host_byte_order<K>(set: &Set<'_, K>) {
    let mut ud = Udata::new();
    if ud.put_u32(sys::NFTNL_UDATA_SET_KEYBYTEORDER, BYTEORDER_HOST) {
        let (data, len) = ud.data();
        // SAFETY: the set is live; libnftnl copies `len` bytes from `data`.
        unsafe {
            sys::nftnl_set_set_data(
                set.as_ptr().as_ptr(),
                sys::NFTNL_SET_USERDATA as u16,
                data,
                len,
            );
        }
    }
}

/// A table message nftnl's [`Table`] cannot write: with a comment (nft's
/// userdata), or `NFT_MSG_DESTROYTABLE`. Built by libnftnl.
struct TableMsg {
    table: NonNull<sys::nftnl_table>,
    ty: u16,
    flags: u16,
}

impl TableMsg {
    fn new(ty: u16, flags: u16, comment: Option<&CStr>) -> TableMsg {
        // SAFETY: plain allocation; the result is checked.
        let table = alloc_or_abort(unsafe { sys::nftnl_table_alloc() });
        // SAFETY: `table` is live; the strings are NUL-terminated and
        // copied by libnftnl, as is the userdata.
        unsafe {
            let t = table.as_ptr();
            sys::nftnl_table_set_u32(t, sys::NFTNL_TABLE_FAMILY as u16, u32::from(FAMILY_INET));
            sys::nftnl_table_set_str(t, sys::NFTNL_TABLE_NAME as u16, TABLE_C.as_ptr());
            if let Some(c) = comment {
                let mut ud = Udata::new();
                if ud.put_strz(sys::NFTNL_UDATA_TABLE_COMMENT, c) {
                    let (data, len) = ud.data();
                    sys::nftnl_table_set_data(t, sys::NFTNL_TABLE_USERDATA as u16, data, len);
                }
            }
        }
        TableMsg { table, ty, flags }
    }
}

// SAFETY: a table message (name, family, a comment of at most
// NFTNL_UDATA_COMMENT_MAXLEN bytes) is far below nft_nlmsg_maxsize().
unsafe impl NlMsg for TableMsg {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, _msg_type: MsgType) {
        // SAFETY: the caller (nftnl's Batch) gives room for the largest
        // message; the table is live.
        unsafe {
            let h = sys::nftnl_nlmsg_build_hdr(
                buf.cast(),
                self.ty,
                u16::from(FAMILY_INET),
                nl::F_ACK | self.flags,
                seq,
            );
            sys::nftnl_table_nlmsg_build_payload(h, self.table.as_ptr());
        }
    }
}

impl Drop for TableMsg {
    fn drop(&mut self) {
        // SAFETY: allocated by nftnl_table_alloc, freed once.
        unsafe { sys::nftnl_table_free(self.table.as_ptr()) }
    }
}

/// One nftnl batch being built, with a description of each message for
/// error reports.
struct Tx {
    batch: nftnl::Batch,
    what: Vec<String>,
}

/// A finished batch: its bytes, and the sequence numbers nftnl gave it.
struct Sent {
    bytes: Vec<u8>,
    /// (sequence number, description) of every message inside the batch.
    acked: Vec<(u32, String)>,
    /// Sequence numbers of the batch begin/end messages (0 where the kernel
    /// does not acknowledge them and nftnl leaves them unnumbered).
    framing: Vec<u32>,
    /// The first sequence number after the batch.
    next_seq: u32,
}

impl Tx {
    fn new() -> Tx {
        Tx {
            batch: nftnl::Batch::new(),
            what: Vec::new(),
        }
    }

    fn add(&mut self, m: &impl NlMsg, ty: MsgType, what: impl Into<String>) {
        self.batch.add(m, ty);
        self.what.push(what.into());
    }

    /// Adds the element messages of `set` (none when it is empty).
    fn elements<K>(&mut self, set: &Set<'_, K>, count: usize) {
        let what = format!(
            "add {count} elements to set {}",
            set.get_name().to_string_lossy()
        );
        for m in set.elems_iter() {
            self.add(&m, MsgType::Add, what.clone());
        }
    }

    /// Ends the batch and reads back the sequence number of each message.
    fn finish(self) -> Result<Sent, NetError> {
        let fin = self.batch.finalize();
        let bytes: Vec<u8> = fin.iter().flatten().copied().collect();
        let mut acked = Vec::new();
        let mut framing = Vec::new();
        let mut what = self.what.into_iter();
        for m in nl::Messages::new(&bytes) {
            if m.ty == NFNL_MSG_BATCH_BEGIN || m.ty == NFNL_MSG_BATCH_END {
                framing.push(m.seq);
            } else if m.flags & nl::F_ACK == 0 {
                return Err(nft_err(format!(
                    "batch message {:#x} without NLM_F_ACK",
                    m.ty
                )));
            } else {
                let w = what.next().unwrap_or_default();
                acked.push((m.seq, w));
            }
        }
        if what.next().is_some() || framing.len() != 2 {
            return Err(nft_err(
                "the built batch does not have the messages added to it",
            ));
        }
        Ok(Sent {
            bytes,
            acked,
            framing,
            next_seq: fin.sequence_numbers().end,
        })
    }
}

const SET_BRIDGES: u32 = 1;
const SET_ALLOW_ANY: u32 = 2;
const SET_ALLOW_PROTO: u32 = 3;
const SET_ALLOW_PORT: u32 = 4;
const SET_SERVICES: u32 = 5;

/// Adds each distinct key to `set` (nftnl's element messages are sent with
/// NLM_F_EXCL: a key twice would be refused).
fn fill<const T: u32, const L: u32>(set: &mut Set<'_, Key<T, L>>, keys: Vec<Vec<u8>>) -> usize {
    let keys: BTreeSet<Vec<u8>> = keys.into_iter().collect();
    for k in &keys {
        set.add(&Key(k.clone()));
    }
    keys.len()
}

/// One rule: the expressions in order, appended to `chain`.
macro_rules! rule {
    ($tx:expr, $chain:expr, $what:expr, [$($e:expr),+ $(,)?]) => {{
        let mut r = Rule::new(&$chain);
        $( r.add_expr(&$e); )+
        let what = format!("add rule {}: {}", $chain.get_name().to_string_lossy(), $what);
        $tx.add(&r, MsgType::Add, what);
    }};
}

fn base_chain<'a>(
    table: &'a Table,
    name: &CStr,
    ty: ChainType,
    hook: Hook,
    prio: i32,
) -> Chain<'a> {
    let mut c = Chain::new(name, table);
    c.set_hook(hook, prio);
    c.set_type(ty);
    c.set_policy(Policy::Accept);
    c
}

/// Builds the whole transaction for `rs`; `bogus`: with one more rule that
/// looks up a set that does not exist, so that the kernel rejects it.
fn build(rs: &Ruleset, bogus: bool) -> Result<Sent, NetError> {
    let inet = ProtoFamily::Inet;
    let table = Table::new(TABLE_C, inet);
    let mut tx = Tx::new();
    tx.add(&table, MsgType::Add, "add table (ensure)");
    tx.add(&table, MsgType::Del, "delete old table");
    let comment = CString::new(format!("hearth-netd {}", rs.fingerprint()))
        .map_err(|e| nft_err(format!("table comment: {e}")))?;
    tx.add(
        &TableMsg::new(msg::NEWTABLE, nl::F_CREATE, Some(&comment)),
        MsgType::Add,
        "add table",
    );

    let mut bridges = Set::<IfKey>::new_named(c"bridges", SET_BRIDGES, &table, inet);
    host_byte_order(&bridges);
    let mut allow_any = Set::<AnyKey>::new_named(c"allow_any", SET_ALLOW_ANY, &table, inet);
    let mut allow_proto = Set::<ProtoKey>::new_named(c"allow_proto", SET_ALLOW_PROTO, &table, inet);
    let mut allow_port = Set::<PortKey>::new_named(c"allow_port", SET_ALLOW_PORT, &table, inet);
    let mut services = Set::<ServiceKey>::new_named(c"services", SET_SERVICES, &table, inet);
    tx.add(&bridges, MsgType::Add, "add set bridges");
    tx.add(&allow_any, MsgType::Add, "add set allow_any");
    tx.add(&allow_proto, MsgType::Add, "add set allow_proto");
    tx.add(&allow_port, MsgType::Add, "add set allow_port");
    tx.add(&services, MsgType::Add, "add set services");

    let n = fill(
        &mut bridges,
        rs.bridges.iter().map(|b| ifname(b).to_vec()).collect(),
    );
    tx.elements(&bridges, n);
    let n = fill(
        &mut allow_any,
        rs.allow_any
            .iter()
            .map(|(f, t)| [ifname(f), ifname(t)].concat())
            .collect(),
    );
    tx.elements(&allow_any, n);
    let n = fill(
        &mut allow_proto,
        rs.allow_proto
            .iter()
            .map(|(f, t, p)| [&ifname(f)[..], &ifname(t), &u8_reg(*p)].concat())
            .collect(),
    );
    tx.elements(&allow_proto, n);
    let n = fill(
        &mut allow_port,
        rs.allow_port
            .iter()
            .map(|(f, t, p, port)| {
                [&ifname(f)[..], &ifname(t), &u8_reg(*p), &port_reg(*port)].concat()
            })
            .collect(),
    );
    tx.elements(&allow_port, n);
    let n = fill(
        &mut services,
        rs.services
            .iter()
            .map(|(br, p, port)| [&ifname(br)[..], &u8_reg(*p), &port_reg(*port)].concat())
            .collect(),
    );
    tx.elements(&services, n);

    let forward = base_chain(&table, c"forward", ChainType::Filter, Hook::Forward, 0);
    let input = base_chain(&table, c"input", ChainType::Filter, Hook::In, 0);
    let postrouting = base_chain(
        &table,
        c"postrouting",
        ChainType::Nat,
        Hook::PostRouting,
        100,
    );
    tx.add(&forward, MsgType::Add, "add chain forward");
    tx.add(&input, MsgType::Add, "add chain input");
    tx.add(&postrouting, MsgType::Add, "add chain postrouting");

    let established = || {
        (
            Conntrack::State,
            Bitwise::new(CT_ESTABLISHED_RELATED, 0u32),
            Cmp::new(CmpOp::Neq, 0u32),
        )
    };

    // forward
    let (ct, mask, nonzero) = established();
    rule!(
        tx,
        forward,
        "ct state established,related accept",
        [ct, mask, nonzero, Verdict::Accept]
    );
    let admin = ifname(&rs.admin);
    rule!(
        tx,
        forward,
        "admin reaches every domain",
        [
            Meta::IifName,
            Cmp::new(CmpOp::Eq, &admin[..]),
            Meta::OifName,
            Lookup::new(&bridges),
            Verdict::Accept,
        ]
    );
    rule!(
        tx,
        forward,
        "iifname . oifname @allow_any accept",
        [
            MetaInto(Meta::IifName, R8),
            MetaInto(Meta::OifName, R12),
            Lookup::new(&allow_any),
            Verdict::Accept,
        ]
    );
    rule!(
        tx,
        forward,
        "iifname . oifname . l4proto @allow_proto accept",
        [
            MetaInto(Meta::IifName, R8),
            MetaInto(Meta::OifName, R12),
            MetaInto(Meta::L4Proto, R16),
            Lookup::new(&allow_proto),
            Verdict::Accept,
        ]
    );
    rule!(
        tx,
        forward,
        "iifname . oifname . l4proto . th dport @allow_port accept",
        [
            MetaInto(Meta::IifName, R8),
            MetaInto(Meta::OifName, R12),
            MetaInto(Meta::L4Proto, R16),
            ThDportInto(R17),
            Lookup::new(&allow_port),
            Verdict::Accept,
        ]
    );
    let uplink = rs.uplink.as_deref().map(ifname);
    if let Some(up) = &uplink {
        rule!(
            tx,
            forward,
            "domains reach the uplink",
            [
                Meta::IifName,
                Lookup::new(&bridges),
                Meta::OifName,
                Cmp::new(CmpOp::Eq, &up[..]),
                Verdict::Accept,
            ]
        );
    }
    rule!(
        tx,
        forward,
        "iifname @bridges drop",
        [Meta::IifName, Lookup::new(&bridges), Verdict::Drop]
    );
    rule!(
        tx,
        forward,
        "oifname @bridges drop",
        [Meta::OifName, Lookup::new(&bridges), Verdict::Drop]
    );

    // input
    let (ct, mask, nonzero) = established();
    rule!(
        tx,
        input,
        "ct state established,related accept",
        [ct, mask, nonzero, Verdict::Accept]
    );
    rule!(
        tx,
        input,
        "iifname . l4proto . th dport @services accept",
        [
            MetaInto(Meta::IifName, R8),
            MetaInto(Meta::L4Proto, R12),
            ThDportInto(R13),
            Lookup::new(&services),
            Verdict::Accept,
        ]
    );
    for (proto, what) in [(1u8, "icmp"), (58u8, "ipv6-icmp")] {
        rule!(
            tx,
            input,
            format!("iifname @bridges {what} accept"),
            [
                Meta::IifName,
                Lookup::new(&bridges),
                Meta::L4Proto,
                Cmp::new(CmpOp::Eq, proto),
                Verdict::Accept,
            ]
        );
    }
    rule!(
        tx,
        input,
        "iifname @bridges drop",
        [Meta::IifName, Lookup::new(&bridges), Verdict::Drop]
    );

    // postrouting: masquerade each domain's subnet out of the uplink
    if let Some(up) = &uplink {
        for (net, len) in &rs.nat {
            let mask = if *len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(*len))
            };
            let mask = mask.to_be_bytes();
            rule!(
                tx,
                postrouting,
                format!("masquerade {net}/{len}"),
                [
                    Meta::NfProto,
                    Cmp::new(CmpOp::Eq, NFPROTO_IPV4),
                    Meta::OifName,
                    Cmp::new(CmpOp::Eq, &up[..]),
                    Payload::Network(NetworkHeaderField::Ipv4(Ipv4HeaderField::Saddr)),
                    Bitwise::new(&mask[..], &[0u8; 4][..]),
                    Cmp::new(CmpOp::Eq, *net),
                    Masquerade,
                ]
            );
        }
    }

    if bogus {
        // Never added to the batch: the kernel finds no set of that name.
        let missing = Set::<IfKey>::new_named(c"hearthbogus", 99, &table, inet);
        rule!(
            tx,
            forward,
            "bogus lookup in a set that does not exist",
            [Meta::IifName, Lookup::new(&missing), Verdict::Accept]
        );
    }
    tx.finish()
}

fn nft_err(m: impl Into<String>) -> NetError {
    NetError::Nft(m.into())
}

/// Replaces the `inet hearth` table with `rs` in one transaction in the
/// current network namespace, and reads its outcome back.
pub fn apply(rs: &Ruleset) -> Result<ApplyReport, NetError> {
    apply_inner(rs, false)
}

/// Test hook: like [`apply`], with one extra rule that looks up a set the
/// batch never creates, so that the kernel rejects the transaction (ENOENT
/// on that rule). Shows that a rejected batch is reported and leaves the
/// previous table in force.
#[doc(hidden)]
pub fn apply_with_bogus_rule(rs: &Ruleset) -> Result<ApplyReport, NetError> {
    apply_inner(rs, true)
}

/// What the kernel answered to one batch.
struct Outcome {
    /// Per message without an error, nothing; else the errors, described.
    errors: Vec<String>,
    /// Messages that got no acknowledgement (descriptions).
    unacked: Vec<String>,
    /// The generation after the batch (the GETGEN fence's answer).
    generation: u32,
}

/// Sends `sent` in one datagram, then a GETGEN request on the same socket,
/// and reads every answer up to the GETGEN reply.
fn transact(sock: &mut Socket, sent: &Sent) -> Result<Outcome, NetError> {
    let gen_seq = sent.next_seq;
    let mut g = MsgBuf::new();
    let m = g.begin(nft_type(msg::GETGEN), nl::F_REQUEST, gen_seq);
    g.raw(&nfgenmsg(0, 0));
    g.end(m);

    remember_tid();
    sock.send(&sent.bytes)
        .map_err(|e| nft_err(format!("send batch ({} bytes): {e}", sent.bytes.len())))?;
    sock.send(g.bytes())
        .map_err(|e| nft_err(format!("send generation request: {e}")))?;

    let index: BTreeMap<u32, usize> = sent
        .acked
        .iter()
        .enumerate()
        .map(|(i, (s, _))| (*s, i))
        .collect();
    let mut acks = vec![false; sent.acked.len()];
    let mut errors: Vec<String> = Vec::new();
    let mut generation = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while generation.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(nft_err("no answer to the batch within 10 s"));
        }
        let data = sock
            .recv(Some(left))
            .map_err(|e| nft_err(format!("read batch outcome: {e}")))?;
        let Some(data) = data else { continue };
        for m in nl::Messages::new(data) {
            if m.seq == gen_seq {
                if m.ty == nl::MSG_ERROR {
                    if let Some(e) = nl::parse_error(&m) {
                        return Err(nft_err(format!("generation request failed: {e}")));
                    }
                } else if m.ty == nft_type(msg::NEWGEN) && m.payload.len() >= 4 {
                    generation = Some(
                        nl::find_attr(&m.payload[4..], NFTA_GEN_ID)
                            .and_then(nl::attr_be32)
                            .unwrap_or(0),
                    );
                }
                continue;
            }
            if m.ty != nl::MSG_ERROR {
                continue;
            }
            if let Some(&i) = index.get(&m.seq) {
                acks[i] = true;
                if let Some(e) = nl::parse_error(&m) {
                    errors.push(format!("{}: {e}", sent.acked[i].1));
                }
            } else if sent.framing.contains(&m.seq) {
                if let Some(e) = nl::parse_error(&m) {
                    errors.push(format!("batch framing: {e}"));
                }
            }
        }
    }
    let unacked = acks
        .iter()
        .zip(&sent.acked)
        .filter(|(a, _)| !**a)
        .map(|(_, (_, w))| w.clone())
        .collect();
    Ok(Outcome {
        errors,
        unacked,
        generation: generation.unwrap_or(0),
    })
}

fn apply_inner(rs: &Ruleset, bogus: bool) -> Result<ApplyReport, NetError> {
    let start = Instant::now();
    let mut sock = Socket::open(nl::NETLINK_NETFILTER)
        .map_err(|e| nft_err(format!("open netfilter socket: {e}")))?;
    let sent = build(rs, bogus)?;
    let out = transact(&mut sock, &sent)?;
    if !out.errors.is_empty() {
        return Err(nft_err(format!(
            "transaction rejected, previous rules left in force: {}",
            out.errors.join("; ")
        )));
    }
    if let Some(first) = out.unacked.first() {
        return Err(nft_err(format!(
            "{} of {} batch messages were not acknowledged (first: {first}); outcome unknown",
            out.unacked.len(),
            sent.acked.len(),
        )));
    }
    Ok(ApplyReport {
        messages: sent.acked.len(),
        bytes: sent.bytes.len(),
        rules: rs.rule_count(),
        elements: rs.element_counts().iter().sum(),
        generation: out.generation,
        micros: start.elapsed().as_micros(),
    })
}

/// What the kernel holds of our table.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct TableState {
    /// The table's comment (`hearth-netd <fingerprint>`).
    pub comment: Option<String>,
    /// Rules per chain, in [`CHAINS`] order.
    pub rules: [usize; 3],
    /// Elements per set, in [`SETS`] order.
    pub elements: [usize; 5],
}

fn simple(ty: u16, flags: u16, seq: u32, f: impl FnOnce(&mut MsgBuf)) -> MsgBuf {
    let mut b = MsgBuf::new();
    let m = b.begin(nft_type(ty), nl::F_REQUEST | flags, seq);
    b.raw(&nfgenmsg(FAMILY_INET, 0));
    f(&mut b);
    b.end(m);
    b
}

/// Reads our table's comment, rule counts and element counts; `None` when
/// the table does not exist.
pub fn read_state() -> Result<Option<TableState>, NetError> {
    let mut sock = Socket::open(nl::NETLINK_NETFILTER)
        .map_err(|e| nft_err(format!("open netfilter socket: {e}")))?;
    let seq = sock.next_seq();
    let req = simple(msg::GETTABLE, nl::F_ACK, seq, |m| {
        m.attr_str(NFTA_TABLE_NAME, TABLE)
    });
    let tables = match sock.dump(req.bytes(), seq, nft_type(msg::NEWTABLE)) {
        Ok(t) => t,
        Err(e) if e.errno() == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(nft_err(format!("read table: {e}"))),
    };
    let Some(t) = tables.first() else {
        return Ok(None);
    };
    let mut st = TableState::default();
    if let Some(ud) = t
        .get(4..)
        .and_then(|a| nl::find_attr(a, NFTA_TABLE_USERDATA))
    {
        if ud.len() >= 2 && ud[0] == 0 {
            let n = (ud[1] as usize).min(ud.len() - 2);
            st.comment = Some(nl::attr_str(&ud[2..2 + n]));
        }
    }
    let seq = sock.next_seq();
    let req = simple(msg::GETRULE, nl::F_DUMP, seq, |m| {
        m.attr_str(NFTA_RULE_TABLE, TABLE)
    });
    for r in sock
        .dump(req.bytes(), seq, nft_type(msg::NEWRULE))
        .map_err(|e| nft_err(format!("read rules: {e}")))?
    {
        let Some(attrs) = r.get(4..) else { continue };
        let table = nl::find_attr(attrs, NFTA_RULE_TABLE).map(nl::attr_str);
        let chain = nl::find_attr(attrs, NFTA_RULE_CHAIN).map(nl::attr_str);
        if table.as_deref() != Some(TABLE) {
            continue;
        }
        if let Some(i) = chain.and_then(|c| CHAINS.iter().position(|x| *x == c)) {
            st.rules[i] += 1;
        } else {
            // A chain we do not create: someone altered the table.
            st.rules = [usize::MAX; 3];
        }
    }
    for (i, set) in SETS.iter().enumerate() {
        let seq = sock.next_seq();
        let req = simple(msg::GETSETELEM, nl::F_DUMP, seq, |m| {
            m.attr_str(NFTA_SET_ELEM_LIST_TABLE, TABLE);
            m.attr_str(NFTA_SET_ELEM_LIST_SET, set);
        });
        let msgs = match sock.dump(req.bytes(), seq, nft_type(msg::NEWSETELEM)) {
            Ok(m) => m,
            Err(e) if e.errno() == Some(libc::ENOENT) => {
                st.elements[i] = usize::MAX;
                continue;
            }
            Err(e) => return Err(nft_err(format!("read set {set}: {e}"))),
        };
        for p in msgs {
            let Some(attrs) = p.get(4..) else { continue };
            if let Some(list) = nl::find_attr(attrs, NFTA_SET_ELEM_LIST_ELEMENTS) {
                st.elements[i] += nl::Attrs::new(list).count();
            }
        }
    }
    Ok(Some(st))
}

/// True when the kernel's table carries `rs` (same fingerprint, rule counts
/// and element counts).
pub fn is_current(rs: &Ruleset) -> Result<bool, NetError> {
    let Some(st) = read_state()? else {
        return Ok(false);
    };
    Ok(
        st.comment.as_deref() == Some(format!("hearth-netd {}", rs.fingerprint()).as_str())
            && st.rules == rs.rule_counts()
            && st.elements == rs.element_counts(),
    )
}

/// Deletes the table (used when the daemon is told to tear down, and by
/// tests); a missing table is not an error (`NFT_MSG_DESTROYTABLE`).
pub fn delete_table() -> Result<(), NetError> {
    let mut sock = Socket::open(nl::NETLINK_NETFILTER)
        .map_err(|e| nft_err(format!("open netfilter socket: {e}")))?;
    let mut tx = Tx::new();
    tx.add(
        &TableMsg::new(msg::DESTROYTABLE, 0, None),
        MsgType::Del,
        "destroy table",
    );
    let sent = tx.finish()?;
    let out = transact(&mut sock, &sent)?;
    if let Some(e) = out.errors.first() {
        return Err(nft_err(e.clone()));
    }
    if !out.unacked.is_empty() {
        return Err(nft_err("no answer to destroy table"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_type_ids_match_nft() {
        // nft computes concatenated types as (t1 << 6) | t2 ...
        assert_eq!(concat(&[TYPE_IFNAME, TYPE_IFNAME]), (41 << 6) | 41);
        assert_eq!(<AnyKey as SetKey>::TYPE, (41 << 6) | 41);
        assert_eq!(
            <PortKey as SetKey>::TYPE,
            (((((41 << 6) | 41) << 6) | 12) << 6) | 13
        );
    }

    #[test]
    fn batch_acks_every_inner_message_only() {
        let rs = Ruleset {
            bridges: vec!["hb-a".into(), "hb-b".into()],
            admin: "hb-a".into(),
            uplink: Some("eth0".into()),
            allow_any: vec![],
            allow_proto: vec![],
            allow_port: vec![("hb-b".into(), "hb-a".into(), 6, 80)],
            services: vec![("hb-b".into(), 17, 53)],
            nat: vec![
                (Ipv4Addr::new(10, 0, 0, 0), 24),
                (Ipv4Addr::new(10, 0, 1, 0), 24),
            ],
        };
        let sent = build(&rs, false).unwrap();
        let msgs: Vec<_> = nl::Messages::new(&sent.bytes).collect();
        assert_eq!(msgs.first().map(|m| m.ty), Some(NFNL_MSG_BATCH_BEGIN));
        assert_eq!(msgs.last().map(|m| m.ty), Some(NFNL_MSG_BATCH_END));
        assert_eq!(msgs.len(), sent.acked.len() + 2);
        for m in &msgs[1..msgs.len() - 1] {
            assert!(m.flags & nl::F_ACK != 0);
        }
        // Distinct sequence numbers, all before the GETGEN fence's.
        let seqs: BTreeSet<u32> = sent.acked.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs.len(), sent.acked.len());
        assert!(seqs.iter().all(|s| *s < sent.next_seq));
        let rules = msgs
            .iter()
            .filter(|m| m.ty == nft_type(msg::NEWRULE))
            .count();
        assert_eq!(rules, rs.rule_count());
        assert_eq!(rs.rule_counts(), [8, 5, 2]);
        // table x3, 5 sets, 3 non-empty element lists, 3 chains, 15 rules.
        assert_eq!(sent.acked.len(), 3 + 5 + 3 + 3 + 15);
        assert!(sent.acked[0].1.contains("ensure"));
    }
}
