//! The `inet hearth` nftables table, built as raw nf_tables netlink messages
//! and sent as ONE batch transaction.
//!
//! The batch is `add table; delete table; add table, sets, elements, chains,
//! rules`: the kernel commits it atomically, so the old rules stay in force
//! until the new ones are, and a rejected batch leaves the old rules intact.
//!
//! Every message in the batch carries `NLM_F_ACK`, and after the batch a
//! separate `NFT_MSG_GETGEN` request is sent on the same socket: its reply
//! can only arrive after every acknowledgement of the batch, so the outcome
//! is read message by message and never assumed (kernels before 6.10 do not
//! acknowledge the batch-begin/-end messages themselves).
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

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::NetError;
use crate::model::Model;
use crate::netlink::{self as nl, MsgBuf, Socket};

/// The table's name (family inet).
pub const TABLE: &str = "hearth";
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

// Attributes.
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_USERDATA: u16 = 6;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_ID: u16 = 10;
const NFTA_SET_USERDATA: u16 = 13;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_LIST_SET_ID: u16 = 4;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_GEN_ID: u16 = 1;

// Expressions.
const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFTA_BITWISE_SREG: u16 = 1;
const NFTA_BITWISE_DREG: u16 = 2;
const NFTA_BITWISE_LEN: u16 = 3;
const NFTA_BITWISE_MASK: u16 = 4;
const NFTA_BITWISE_XOR: u16 = 5;
const NFTA_CT_DREG: u16 = 1;
const NFTA_CT_KEY: u16 = 2;
const NFTA_LOOKUP_SET: u16 = 1;
const NFTA_LOOKUP_SREG: u16 = 2;
const NFTA_LOOKUP_SET_ID: u16 = 4;
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;

const NFT_META_NFPROTO: u32 = 15;
const NFT_META_L4PROTO: u32 = 16;
const NFT_META_IIFNAME: u32 = 6;
const NFT_META_OIFNAME: u32 = 7;
const NFT_CT_STATE: u32 = 0;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
const NFT_PAYLOAD_NETWORK: u32 = 1;
const NFT_PAYLOAD_TRANSPORT: u32 = 2;
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;
const NF_INET_LOCAL_IN: u32 = 1;
const NF_INET_FORWARD: u32 = 2;
const NF_INET_POST_ROUTING: u32 = 4;
const NFPROTO_IPV4: u8 = 2;
/// ct state established (bit 1) | related (bit 2).
const CT_ESTABLISHED_RELATED: u32 = 0x2 | 0x4;

// Registers: 16-byte NFT_REG_1, and 4-byte NFT_REG32_xx for concatenations.
const REG_VERDICT: u32 = 0;
const REG_1: u32 = 1;
const REG32_00: u32 = 8;

// nft's datatype ids, for `nft list` to print the sets' key types.
const TYPE_INET_PROTOCOL: u32 = 12;
const TYPE_INET_SERVICE: u32 = 13;
const TYPE_IFNAME: u32 = 41;
fn concat(types: &[u32]) -> u32 {
    types.iter().fold(0, |acc, t| (acc << 6) | t)
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

/// One batch being built: the buffer plus, for each acked message, its
/// sequence number and a description for error reports.
struct Batch {
    buf: MsgBuf,
    acked: Vec<(u32, String)>,
    seq: u32,
}

impl Batch {
    fn new(seq: u32) -> Batch {
        let mut b = Batch {
            buf: MsgBuf::new(),
            acked: Vec::new(),
            seq,
        };
        let m = b.buf.begin(NFNL_MSG_BATCH_BEGIN, nl::F_REQUEST, b.seq);
        b.buf.raw(&nfgenmsg(0, NFNL_SUBSYS_NFTABLES));
        b.buf.end(m);
        b
    }

    fn msg(&mut self, ty: u16, flags: u16, what: String, f: impl FnOnce(&mut MsgBuf)) {
        self.seq = self.seq.wrapping_add(1);
        let m = self
            .buf
            .begin(nft_type(ty), nl::F_REQUEST | nl::F_ACK | flags, self.seq);
        self.buf.raw(&nfgenmsg(FAMILY_INET, 0));
        f(&mut self.buf);
        self.buf.end(m);
        self.acked.push((self.seq, what));
    }

    fn finish(mut self) -> (MsgBuf, Vec<(u32, String)>, u32) {
        self.seq = self.seq.wrapping_add(1);
        let m = self.buf.begin(NFNL_MSG_BATCH_END, nl::F_REQUEST, self.seq);
        self.buf.raw(&nfgenmsg(0, NFNL_SUBSYS_NFTABLES));
        self.buf.end(m);
        (self.buf, self.acked, self.seq)
    }
}

/// Rule expressions.
struct Exprs<'a>(&'a mut MsgBuf);

impl Exprs<'_> {
    fn expr(&mut self, name: &str, f: impl FnOnce(&mut MsgBuf)) {
        let e = self.0.nest(NFTA_LIST_ELEM);
        self.0.attr_str(NFTA_EXPR_NAME, name);
        let d = self.0.nest(NFTA_EXPR_DATA);
        f(self.0);
        self.0.nest_end(d);
        self.0.nest_end(e);
    }
    fn meta(&mut self, key: u32, dreg: u32) -> &mut Self {
        self.expr("meta", |b| {
            b.attr_be32(NFTA_META_KEY, key);
            b.attr_be32(NFTA_META_DREG, dreg);
        });
        self
    }
    fn payload(&mut self, base: u32, offset: u32, len: u32, dreg: u32) -> &mut Self {
        self.expr("payload", |b| {
            b.attr_be32(NFTA_PAYLOAD_DREG, dreg);
            b.attr_be32(NFTA_PAYLOAD_BASE, base);
            b.attr_be32(NFTA_PAYLOAD_OFFSET, offset);
            b.attr_be32(NFTA_PAYLOAD_LEN, len);
        });
        self
    }
    fn cmp(&mut self, op: u32, sreg: u32, data: &[u8]) -> &mut Self {
        self.expr("cmp", |b| {
            b.attr_be32(NFTA_CMP_SREG, sreg);
            b.attr_be32(NFTA_CMP_OP, op);
            let d = b.nest(NFTA_CMP_DATA);
            b.attr(NFTA_DATA_VALUE, data);
            b.nest_end(d);
        });
        self
    }
    fn bitwise(&mut self, reg: u32, mask: &[u8]) -> &mut Self {
        self.expr("bitwise", |b| {
            b.attr_be32(NFTA_BITWISE_SREG, reg);
            b.attr_be32(NFTA_BITWISE_DREG, reg);
            b.attr_be32(NFTA_BITWISE_LEN, mask.len() as u32);
            let m = b.nest(NFTA_BITWISE_MASK);
            b.attr(NFTA_DATA_VALUE, mask);
            b.nest_end(m);
            let x = b.nest(NFTA_BITWISE_XOR);
            b.attr(NFTA_DATA_VALUE, &vec![0u8; mask.len()]);
            b.nest_end(x);
        });
        self
    }
    fn ct_state(&mut self, dreg: u32) -> &mut Self {
        self.expr("ct", |b| {
            b.attr_be32(NFTA_CT_DREG, dreg);
            b.attr_be32(NFTA_CT_KEY, NFT_CT_STATE);
        });
        self
    }
    fn lookup(&mut self, set: &str, set_id: u32, sreg: u32) -> &mut Self {
        self.expr("lookup", |b| {
            b.attr_str(NFTA_LOOKUP_SET, set);
            b.attr_be32(NFTA_LOOKUP_SET_ID, set_id);
            b.attr_be32(NFTA_LOOKUP_SREG, sreg);
        });
        self
    }
    fn verdict(&mut self, code: u32) -> &mut Self {
        self.expr("immediate", |b| {
            b.attr_be32(NFTA_IMMEDIATE_DREG, REG_VERDICT);
            let d = b.nest(NFTA_IMMEDIATE_DATA);
            let v = b.nest(NFTA_DATA_VERDICT);
            b.attr_be32(NFTA_VERDICT_CODE, code);
            b.nest_end(v);
            b.nest_end(d);
        });
        self
    }
    fn masquerade(&mut self) -> &mut Self {
        let e = self.0.nest(NFTA_LIST_ELEM);
        self.0.attr_str(NFTA_EXPR_NAME, "masq");
        self.0.nest_end(e);
        self
    }
    fn established(&mut self) -> &mut Self {
        self.ct_state(REG_1)
            .bitwise(REG_1, &CT_ESTABLISHED_RELATED.to_ne_bytes())
            .cmp(NFT_CMP_NEQ, REG_1, &0u32.to_ne_bytes())
    }
}

const SET_BRIDGES: u32 = 1;
const SET_ALLOW_ANY: u32 = 2;
const SET_ALLOW_PROTO: u32 = 3;
const SET_ALLOW_PORT: u32 = 4;
const SET_SERVICES: u32 = 5;

fn set_id(name: &str) -> u32 {
    SETS.iter()
        .position(|s| *s == name)
        .map_or(0, |i| i as u32 + 1)
}

/// Builds the whole transaction for `rs`.
fn build(rs: &Ruleset, seq: u32) -> Batch {
    let mut b = Batch::new(seq);
    let table_attrs = |m: &mut MsgBuf| m.attr_str(NFTA_TABLE_NAME, TABLE);
    b.msg(
        msg::NEWTABLE,
        nl::F_CREATE,
        "add table (ensure)".into(),
        table_attrs,
    );
    b.msg(msg::DELTABLE, 0, "delete old table".into(), table_attrs);
    let comment = format!("hearth-netd {}", rs.fingerprint());
    b.msg(msg::NEWTABLE, nl::F_CREATE, "add table".into(), |m| {
        m.attr_str(NFTA_TABLE_NAME, TABLE);
        // nft's userdata TLV: type 0 (comment), length, NUL-terminated text.
        let mut ud = vec![0u8, (comment.len() + 1) as u8];
        ud.extend_from_slice(comment.as_bytes());
        ud.push(0);
        m.attr(NFTA_TABLE_USERDATA, &ud);
    });

    let sets: [(&str, u32, u32, u32); 5] = [
        ("bridges", SET_BRIDGES, TYPE_IFNAME, 16),
        (
            "allow_any",
            SET_ALLOW_ANY,
            concat(&[TYPE_IFNAME, TYPE_IFNAME]),
            32,
        ),
        (
            "allow_proto",
            SET_ALLOW_PROTO,
            concat(&[TYPE_IFNAME, TYPE_IFNAME, TYPE_INET_PROTOCOL]),
            36,
        ),
        (
            "allow_port",
            SET_ALLOW_PORT,
            concat(&[
                TYPE_IFNAME,
                TYPE_IFNAME,
                TYPE_INET_PROTOCOL,
                TYPE_INET_SERVICE,
            ]),
            40,
        ),
        (
            "services",
            SET_SERVICES,
            concat(&[TYPE_IFNAME, TYPE_INET_PROTOCOL, TYPE_INET_SERVICE]),
            24,
        ),
    ];
    for (name, id, key_type, key_len) in sets {
        b.msg(msg::NEWSET, nl::F_CREATE, format!("add set {name}"), |m| {
            m.attr_str(NFTA_SET_TABLE, TABLE);
            m.attr_str(NFTA_SET_NAME, name);
            m.attr_be32(NFTA_SET_FLAGS, 0);
            m.attr_be32(NFTA_SET_KEY_TYPE, key_type);
            m.attr_be32(NFTA_SET_KEY_LEN, key_len);
            m.attr_be32(NFTA_SET_ID, id);
            if key_type == TYPE_IFNAME {
                // nft's userdata TLV: key byte order = host (a string), so
                // `nft list` prints the names.
                let mut ud = vec![0u8, 4];
                ud.extend_from_slice(&1u32.to_ne_bytes());
                m.attr(NFTA_SET_USERDATA, &ud);
            }
        });
    }

    let keys: [(&str, Vec<Vec<u8>>); 5] = [
        (
            "bridges",
            rs.bridges.iter().map(|b| ifname(b).to_vec()).collect(),
        ),
        (
            "allow_any",
            rs.allow_any
                .iter()
                .map(|(f, t)| [ifname(f), ifname(t)].concat())
                .collect(),
        ),
        (
            "allow_proto",
            rs.allow_proto
                .iter()
                .map(|(f, t, p)| [&ifname(f)[..], &ifname(t), &u8_reg(*p)].concat())
                .collect(),
        ),
        (
            "allow_port",
            rs.allow_port
                .iter()
                .map(|(f, t, p, port)| {
                    [&ifname(f)[..], &ifname(t), &u8_reg(*p), &port_reg(*port)].concat()
                })
                .collect(),
        ),
        (
            "services",
            rs.services
                .iter()
                .map(|(br, p, port)| [&ifname(br)[..], &u8_reg(*p), &port_reg(*port)].concat())
                .collect(),
        ),
    ];
    for (name, elems) in keys {
        if elems.is_empty() {
            continue;
        }
        let what = format!("add {} elements to set {name}", elems.len());
        b.msg(msg::NEWSETELEM, nl::F_CREATE, what, |m| {
            m.attr_str(NFTA_SET_ELEM_LIST_TABLE, TABLE);
            m.attr_str(NFTA_SET_ELEM_LIST_SET, name);
            m.attr_be32(NFTA_SET_ELEM_LIST_SET_ID, set_id(name));
            let list = m.nest(NFTA_SET_ELEM_LIST_ELEMENTS);
            for k in &elems {
                let e = m.nest(NFTA_LIST_ELEM);
                let key = m.nest(NFTA_SET_ELEM_KEY);
                m.attr(NFTA_DATA_VALUE, k);
                m.nest_end(key);
                m.nest_end(e);
            }
            m.nest_end(list);
        });
    }

    let chains: [(&str, &str, u32, i32); 3] = [
        ("forward", "filter", NF_INET_FORWARD, 0),
        ("input", "filter", NF_INET_LOCAL_IN, 0),
        ("postrouting", "nat", NF_INET_POST_ROUTING, 100),
    ];
    for (name, ty, hook, prio) in chains {
        b.msg(
            msg::NEWCHAIN,
            nl::F_CREATE,
            format!("add chain {name}"),
            |m| {
                m.attr_str(NFTA_CHAIN_TABLE, TABLE);
                m.attr_str(NFTA_CHAIN_NAME, name);
                let h = m.nest(NFTA_CHAIN_HOOK);
                m.attr_be32(NFTA_HOOK_HOOKNUM, hook);
                m.attr_be32(NFTA_HOOK_PRIORITY, prio as u32);
                m.nest_end(h);
                m.attr_be32(NFTA_CHAIN_POLICY, NF_ACCEPT);
                m.attr_str(NFTA_CHAIN_TYPE, ty);
            },
        );
    }

    let rule = |b: &mut Batch, chain: &str, what: &str, f: &dyn Fn(&mut Exprs<'_>)| {
        b.msg(
            msg::NEWRULE,
            nl::F_CREATE | nl::F_APPEND,
            format!("add rule {chain}: {what}"),
            |m| {
                m.attr_str(NFTA_RULE_TABLE, TABLE);
                m.attr_str(NFTA_RULE_CHAIN, chain);
                let l = m.nest(NFTA_RULE_EXPRESSIONS);
                f(&mut Exprs(m));
                m.nest_end(l);
            },
        );
    };
    let r8 = REG32_00;
    let r12 = REG32_00 + 4;
    let r16 = REG32_00 + 8;
    let r17 = REG32_00 + 9;

    // forward
    rule(
        &mut b,
        "forward",
        "ct state established,related accept",
        &|e| {
            e.established().verdict(NF_ACCEPT);
        },
    );
    let admin = ifname(&rs.admin);
    rule(&mut b, "forward", "admin reaches every domain", &|e| {
        e.meta(NFT_META_IIFNAME, REG_1)
            .cmp(NFT_CMP_EQ, REG_1, &admin)
            .meta(NFT_META_OIFNAME, REG_1)
            .lookup("bridges", SET_BRIDGES, REG_1)
            .verdict(NF_ACCEPT);
    });
    rule(
        &mut b,
        "forward",
        "iifname . oifname @allow_any accept",
        &|e| {
            e.meta(NFT_META_IIFNAME, r8)
                .meta(NFT_META_OIFNAME, r12)
                .lookup("allow_any", SET_ALLOW_ANY, r8)
                .verdict(NF_ACCEPT);
        },
    );
    rule(
        &mut b,
        "forward",
        "iifname . oifname . l4proto @allow_proto accept",
        &|e| {
            e.meta(NFT_META_IIFNAME, r8)
                .meta(NFT_META_OIFNAME, r12)
                .meta(NFT_META_L4PROTO, r16)
                .lookup("allow_proto", SET_ALLOW_PROTO, r8)
                .verdict(NF_ACCEPT);
        },
    );
    rule(
        &mut b,
        "forward",
        "iifname . oifname . l4proto . th dport @allow_port accept",
        &|e| {
            e.meta(NFT_META_IIFNAME, r8)
                .meta(NFT_META_OIFNAME, r12)
                .meta(NFT_META_L4PROTO, r16)
                .payload(NFT_PAYLOAD_TRANSPORT, 2, 2, r17)
                .lookup("allow_port", SET_ALLOW_PORT, r8)
                .verdict(NF_ACCEPT);
        },
    );
    if let Some(up) = &rs.uplink {
        let up = ifname(up);
        rule(&mut b, "forward", "domains reach the uplink", &|e| {
            e.meta(NFT_META_IIFNAME, REG_1)
                .lookup("bridges", SET_BRIDGES, REG_1)
                .meta(NFT_META_OIFNAME, REG_1)
                .cmp(NFT_CMP_EQ, REG_1, &up)
                .verdict(NF_ACCEPT);
        });
    }
    rule(&mut b, "forward", "iifname @bridges drop", &|e| {
        e.meta(NFT_META_IIFNAME, REG_1)
            .lookup("bridges", SET_BRIDGES, REG_1)
            .verdict(NF_DROP);
    });
    rule(&mut b, "forward", "oifname @bridges drop", &|e| {
        e.meta(NFT_META_OIFNAME, REG_1)
            .lookup("bridges", SET_BRIDGES, REG_1)
            .verdict(NF_DROP);
    });

    // input
    rule(
        &mut b,
        "input",
        "ct state established,related accept",
        &|e| {
            e.established().verdict(NF_ACCEPT);
        },
    );
    rule(
        &mut b,
        "input",
        "iifname . l4proto . th dport @services accept",
        &|e| {
            e.meta(NFT_META_IIFNAME, r8)
                .meta(NFT_META_L4PROTO, r12)
                .payload(NFT_PAYLOAD_TRANSPORT, 2, 2, r12 + 1)
                .lookup("services", SET_SERVICES, r8)
                .verdict(NF_ACCEPT);
        },
    );
    for (proto, what) in [(1u8, "icmp"), (58u8, "ipv6-icmp")] {
        rule(
            &mut b,
            "input",
            &format!("iifname @bridges {what} accept"),
            &|e| {
                e.meta(NFT_META_IIFNAME, REG_1)
                    .lookup("bridges", SET_BRIDGES, REG_1)
                    .meta(NFT_META_L4PROTO, REG_1)
                    .cmp(NFT_CMP_EQ, REG_1, &[proto])
                    .verdict(NF_ACCEPT);
            },
        );
    }
    rule(&mut b, "input", "iifname @bridges drop", &|e| {
        e.meta(NFT_META_IIFNAME, REG_1)
            .lookup("bridges", SET_BRIDGES, REG_1)
            .verdict(NF_DROP);
    });

    // postrouting: masquerade each domain's subnet out of the uplink
    if let Some(up) = &rs.uplink {
        let up = ifname(up);
        for (net, len) in &rs.nat {
            let mask = if *len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(*len))
            };
            rule(
                &mut b,
                "postrouting",
                &format!("masquerade {net}/{len}"),
                &|e| {
                    e.meta(NFT_META_NFPROTO, REG_1)
                        .cmp(NFT_CMP_EQ, REG_1, &[NFPROTO_IPV4])
                        .meta(NFT_META_OIFNAME, REG_1)
                        .cmp(NFT_CMP_EQ, REG_1, &up)
                        .payload(NFT_PAYLOAD_NETWORK, 12, 4, REG_1)
                        .bitwise(REG_1, &mask.to_be_bytes())
                        .cmp(NFT_CMP_EQ, REG_1, &net.octets())
                        .masquerade();
                },
            );
        }
    }
    b
}

fn nft_err(m: impl Into<String>) -> NetError {
    NetError::Nft(m.into())
}

/// Replaces the `inet hearth` table with `rs` in one transaction in the
/// current network namespace, and reads its outcome back.
pub fn apply(rs: &Ruleset) -> Result<ApplyReport, NetError> {
    apply_inner(rs, false)
}

/// Test hook: like [`apply`], with one extra rule whose expression the
/// kernel does not know, so that the transaction is rejected. Shows that a
/// rejected batch is reported and leaves the previous table in force.
#[doc(hidden)]
pub fn apply_with_bogus_rule(rs: &Ruleset) -> Result<ApplyReport, NetError> {
    apply_inner(rs, true)
}

fn apply_inner(rs: &Ruleset, bogus: bool) -> Result<ApplyReport, NetError> {
    let start = Instant::now();
    let mut sock = Socket::open(nl::NETLINK_NETFILTER)
        .map_err(|e| nft_err(format!("open netfilter socket: {e}")))?;
    let seq0 = sock.next_seq().wrapping_mul(1000);
    let mut batch = build(rs, seq0);
    if bogus {
        batch.msg(
            msg::NEWRULE,
            nl::F_CREATE | nl::F_APPEND,
            "add rule forward: bogus expression".into(),
            |m| {
                m.attr_str(NFTA_RULE_TABLE, TABLE);
                m.attr_str(NFTA_RULE_CHAIN, "forward");
                let l = m.nest(NFTA_RULE_EXPRESSIONS);
                Exprs(m).expr("hearthbogus", |_| {});
                m.nest_end(l);
            },
        );
    }
    let (buf, acked, last) = batch.finish();
    let gen_seq = last.wrapping_add(1);
    let mut g = MsgBuf::new();
    let m = g.begin(nft_type(msg::GETGEN), nl::F_REQUEST, gen_seq);
    g.raw(&nfgenmsg(0, 0));
    g.end(m);

    remember_tid();
    sock.send(buf.bytes())
        .map_err(|e| nft_err(format!("send batch ({} bytes): {e}", buf.len())))?;
    sock.send(g.bytes())
        .map_err(|e| nft_err(format!("send generation request: {e}")))?;

    let index: BTreeMap<u32, usize> = acked
        .iter()
        .enumerate()
        .map(|(i, (s, _))| (*s, i))
        .collect();
    let mut acks = vec![false; acked.len()];
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
                    errors.push(format!("{}: {e}", acked[i].1));
                }
            } else if m.seq == seq0 || m.seq == last {
                if let Some(e) = nl::parse_error(&m) {
                    errors.push(format!("batch framing: {e}"));
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(nft_err(format!(
            "transaction rejected, previous rules left in force: {}",
            errors.join("; ")
        )));
    }
    let missing = acks.iter().filter(|a| !**a).count();
    if missing > 0 {
        let first = acks.iter().position(|a| !*a).map(|i| acked[i].1.clone());
        return Err(nft_err(format!(
            "{missing} of {} batch messages were not acknowledged (first: {}); outcome unknown",
            acks.len(),
            first.unwrap_or_default()
        )));
    }
    Ok(ApplyReport {
        messages: acked.len(),
        bytes: buf.len(),
        rules: rs.rule_count(),
        elements: rs.element_counts().iter().sum(),
        generation: generation.unwrap_or(0),
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
/// tests); a missing table is not an error.
pub fn delete_table() -> Result<(), NetError> {
    let mut sock = Socket::open(nl::NETLINK_NETFILTER)
        .map_err(|e| nft_err(format!("open netfilter socket: {e}")))?;
    let mut b = Batch::new(sock.next_seq().wrapping_mul(1000));
    b.msg(msg::DESTROYTABLE, 0, "destroy table".into(), |m| {
        m.attr_str(NFTA_TABLE_NAME, TABLE)
    });
    let (buf, acked, _) = b.finish();
    remember_tid();
    sock.send(buf.bytes())
        .map_err(|e| nft_err(format!("send: {e}")))?;
    let seq = acked[0].0;
    loop {
        let data = sock
            .recv(Some(Duration::from_secs(5)))
            .map_err(|e| nft_err(format!("read: {e}")))?
            .ok_or_else(|| nft_err("no answer to destroy table"))?;
        for m in nl::Messages::new(data) {
            if m.seq == seq && m.ty == nl::MSG_ERROR {
                return match nl::parse_error(&m) {
                    None => Ok(()),
                    Some(e) => Err(nft_err(format!("destroy table: {e}"))),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_type_ids_match_nft() {
        // nft computes concatenated types as (t1 << 6) | t2 ...
        assert_eq!(concat(&[TYPE_IFNAME, TYPE_IFNAME]), (41 << 6) | 41);
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
        let (buf, acked, _) = build(&rs, 100).finish();
        let msgs: Vec<_> = nl::Messages::new(buf.bytes()).collect();
        assert_eq!(msgs.first().map(|m| m.ty), Some(NFNL_MSG_BATCH_BEGIN));
        assert_eq!(msgs.last().map(|m| m.ty), Some(NFNL_MSG_BATCH_END));
        assert_eq!(msgs.len(), acked.len() + 2);
        for m in &msgs[1..msgs.len() - 1] {
            assert!(m.flags & nl::F_ACK != 0);
        }
        let rules = msgs
            .iter()
            .filter(|m| m.ty == nft_type(msg::NEWRULE))
            .count();
        assert_eq!(rules, rs.rule_count());
        assert_eq!(rs.rule_counts(), [8, 5, 2]);
    }
}
