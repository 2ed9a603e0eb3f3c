//! The batch: the whole table as ONE nftnl transaction (`add table; delete
//! table; add table, sets, elements, chains, rules`), sent on our own
//! netlink [`Socket`] and followed by a `NFT_MSG_GETGEN` fence whose reply
//! can only come after every acknowledgement, so the outcome is read
//! message by message.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CStr, CString};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nftnl::expr::{
    Bitwise, Cmp, CmpOp, Conntrack, Ipv4HeaderField, Lookup, Masquerade, Meta, NetworkHeaderField,
    Payload, Verdict,
};
use nftnl::set::Set;
use nftnl::{Chain, ChainType, Hook, MsgType, NlMsg, Policy, ProtoFamily, Rule, Table};
use serde::Serialize;

use super::ffi::{
    host_byte_order, AnyKey, IfKey, Key, MetaInto, PortKey, ProtoKey, ServiceKey, TableMsg,
    ThDportInto,
};
use super::ruleset::{self, Expr, Load, Op};
use super::{msg, nfgenmsg, nft_err, nft_type, Ruleset, TABLE_C};
use crate::error::NetError;
use crate::netlink::{self as nl, MsgBuf, Socket};

const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFTA_GEN_ID: u16 = 1;

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

/// A thread of this process that sent a batch: its id, its name as the
/// kernel reports it (`comm`), and when it last sent one.
struct Sender {
    tid: i32,
    comm: String,
    at: Instant,
}

static SENDERS: Mutex<Vec<Sender>> = Mutex::new(Vec::new());

/// How long a sender counts as ours after it last sent a batch, even once
/// its thread has ended (the watcher may read the notification later).
const SENDER_GRACE: Duration = Duration::from_secs(5);

fn thread_comm(tid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
        .ok()
        .map(|s| s.trim_end_matches('\n').to_string())
}

/// True when the transaction that the kernel reports as committed by
/// thread `tid` named `comm` was sent by this process: a thread of ours
/// with that id and name sent a batch, and it is still running or sent it
/// within the last few seconds. Thread ids are reused once a thread ends
/// (and `pid_max` may be as low as 32768), so an id alone would let another
/// program's change pass for ours.
pub fn is_own_sender(tid: i32, comm: &str) -> bool {
    let Ok(v) = SENDERS.lock() else { return false };
    v.iter().any(|s| {
        s.tid == tid
            && s.comm == comm
            && (s.at.elapsed() < SENDER_GRACE || thread_comm(tid).as_deref() == Some(comm))
    })
}

fn remember_sender() {
    let tid = nl::gettid();
    let Some(comm) = thread_comm(tid) else { return };
    if let Ok(mut v) = SENDERS.lock() {
        v.retain(|s| s.tid != tid);
        if v.len() >= 256 {
            v.remove(0);
        }
        v.push(Sender {
            tid,
            comm,
            at: Instant::now(),
        });
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

/// Adds the keys to `set`; returns how many.
fn fill<const T: u32, const L: u32>(
    set: &mut Set<'_, Key<T, L>>,
    keys: &BTreeSet<Vec<u8>>,
) -> usize {
    for k in keys {
        set.add(&Key(k.clone()));
    }
    keys.len()
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

/// The sets of one batch, in [`super::SETS`] order.
struct Sets<'a> {
    bridges: Set<'a, IfKey>,
    allow_any: Set<'a, AnyKey>,
    allow_proto: Set<'a, ProtoKey>,
    allow_port: Set<'a, PortKey>,
    services: Set<'a, ServiceKey>,
}

impl Sets<'_> {
    fn lookup(&self, i: usize) -> Lookup {
        match i {
            ruleset::BRIDGES => Lookup::new(&self.bridges),
            ruleset::ALLOW_ANY => Lookup::new(&self.allow_any),
            ruleset::ALLOW_PROTO => Lookup::new(&self.allow_proto),
            ruleset::ALLOW_PORT => Lookup::new(&self.allow_port),
            _ => Lookup::new(&self.services),
        }
    }
}

fn meta(l: Load) -> Meta {
    match l {
        Load::IifName => Meta::IifName,
        Load::OifName => Meta::OifName,
        Load::L4Proto => Meta::L4Proto,
        Load::NfProto => Meta::NfProto,
    }
}

fn cmp_op(op: Op) -> CmpOp {
    match op {
        Op::Eq => CmpOp::Eq,
        Op::Neq => CmpOp::Neq,
    }
}

/// Appends the nftnl expression for `e` to `r`.
fn add_expr(r: &mut Rule, e: &Expr, sets: &Sets) {
    match e {
        Expr::Meta(l) => r.add_expr(&meta(*l)),
        Expr::MetaInto(l, reg) => r.add_expr(&MetaInto(meta(*l), *reg)),
        Expr::ThDportInto(reg) => r.add_expr(&ThDportInto(*reg)),
        Expr::CtState => r.add_expr(&Conntrack::State),
        Expr::Bitwise(mask, xor) => r.add_expr(&Bitwise::new(&mask[..], &xor[..])),
        Expr::Cmp(op, data) => r.add_expr(&Cmp::new(cmp_op(*op), &data[..])),
        Expr::Ipv4Saddr => r.add_expr(&Payload::Network(NetworkHeaderField::Ipv4(
            Ipv4HeaderField::Saddr,
        ))),
        Expr::Lookup(i) => r.add_expr(&sets.lookup(*i)),
        Expr::Accept => r.add_expr(&Verdict::Accept),
        Expr::Drop => r.add_expr(&Verdict::Drop),
        Expr::Masquerade => r.add_expr(&Masquerade),
    }
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

    let mut sets = Sets {
        bridges: Set::new_named(c"bridges", SET_BRIDGES, &table, inet),
        allow_any: Set::new_named(c"allow_any", SET_ALLOW_ANY, &table, inet),
        allow_proto: Set::new_named(c"allow_proto", SET_ALLOW_PROTO, &table, inet),
        allow_port: Set::new_named(c"allow_port", SET_ALLOW_PORT, &table, inet),
        services: Set::new_named(c"services", SET_SERVICES, &table, inet),
    };
    host_byte_order(&sets.bridges);
    tx.add(&sets.bridges, MsgType::Add, "add set bridges");
    tx.add(&sets.allow_any, MsgType::Add, "add set allow_any");
    tx.add(&sets.allow_proto, MsgType::Add, "add set allow_proto");
    tx.add(&sets.allow_port, MsgType::Add, "add set allow_port");
    tx.add(&sets.services, MsgType::Add, "add set services");

    let [bridges, allow_any, allow_proto, allow_port, services] = rs.elements();
    let n = fill(&mut sets.bridges, &bridges);
    tx.elements(&sets.bridges, n);
    let n = fill(&mut sets.allow_any, &allow_any);
    tx.elements(&sets.allow_any, n);
    let n = fill(&mut sets.allow_proto, &allow_proto);
    tx.elements(&sets.allow_proto, n);
    let n = fill(&mut sets.allow_port, &allow_port);
    tx.elements(&sets.allow_port, n);
    let n = fill(&mut sets.services, &services);
    tx.elements(&sets.services, n);

    let chains = [
        base_chain(&table, c"forward", ChainType::Filter, Hook::Forward, 0),
        base_chain(&table, c"input", ChainType::Filter, Hook::In, 0),
        base_chain(
            &table,
            c"postrouting",
            ChainType::Nat,
            Hook::PostRouting,
            100,
        ),
    ];
    for (c, name) in chains.iter().zip(super::CHAINS) {
        tx.add(c, MsgType::Add, format!("add chain {name}"));
    }

    for spec in rs.rules() {
        let chain = &chains[spec.chain];
        let mut r = Rule::new(chain);
        for e in &spec.exprs {
            add_expr(&mut r, e, &sets);
        }
        let what = format!(
            "add rule {}: {}",
            chain.get_name().to_string_lossy(),
            spec.what
        );
        tx.add(&r, MsgType::Add, what);
    }

    if bogus {
        // Never added to the batch: the kernel finds no set of that name.
        let missing = Set::<IfKey>::new_named(c"hearthbogus", 99, &table, inet);
        let mut r = Rule::new(&chains[0]);
        r.add_expr(&Meta::IifName);
        r.add_expr(&Lookup::new(&missing));
        r.add_expr(&Verdict::Accept);
        tx.add(
            &r,
            MsgType::Add,
            "add rule forward: bogus lookup in a set that does not exist",
        );
    }
    tx.finish()
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

    remember_sender();
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
    use std::net::Ipv4Addr;

    use super::*;

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

    #[test]
    fn a_sender_is_ours_only_with_its_own_name_and_while_it_runs_or_just_sent() {
        let tid = nl::gettid();
        let comm = thread_comm(tid).expect("own comm");
        assert!(!is_own_sender(tid, &comm), "nothing sent yet");
        remember_sender();
        assert!(is_own_sender(tid, &comm));
        // Another program that got the same id (ids are reused) is not us.
        assert!(!is_own_sender(tid, "nft"));
        // A sender that ended long ago no longer counts: its id is free.
        let ended = std::thread::spawn(|| {
            remember_sender();
            let t = nl::gettid();
            (t, thread_comm(t).expect("comm"))
        })
        .join()
        .unwrap();
        assert!(is_own_sender(ended.0, &ended.1), "within the grace");
        for s in SENDERS.lock().unwrap().iter_mut() {
            if s.tid == ended.0 || s.tid == tid {
                s.at -= SENDER_GRACE;
            }
        }
        assert!(
            !is_own_sender(ended.0, &ended.1),
            "ended and past the grace"
        );
        assert!(is_own_sender(tid, &comm), "a running sender stays ours");
    }
}
