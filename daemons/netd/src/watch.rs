//! The guard: listens to nftables change notifications (`NFNLGRP_NFTABLES`)
//! and restores the `inet hearth` table when another program flushed,
//! deleted or altered it.
//!
//! The kernel sends one notification per changed object, then an
//! `NFT_MSG_NEWGEN` carrying the pid (thread id) and name of the process that
//! committed the transaction. The watcher collects the notifications that
//! name table `inet hearth`; at the generation message it ignores
//! transactions sent by our own threads ([`crate::nft::is_own_sender`]) and
//! restores the table after anyone else's, logging who did what. If the
//! notification queue overflowed (ENOBUFS) it checks the kernel's table
//! against the ruleset and restores when they differ.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::netlink::{self as nl, Socket};
use crate::nft::{self, msg, Ruleset};

/// `NFNLGRP_NFTABLES`.
const NFNLGRP_NFTABLES: i32 = 7;
const NFTA_GEN_PROC_PID: u16 = 2;
const NFTA_GEN_PROC_NAME: u16 = 3;

/// A running watcher; stops and joins its thread when dropped.
#[derive(Debug)]
pub struct Watcher {
    stop: Arc<AtomicBool>,
    restores: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
}

impl Watcher {
    /// How many times the table was restored.
    pub fn restores(&self) -> u64 {
        self.restores.load(Ordering::SeqCst)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn kind(t: u16) -> Option<&'static str> {
    Some(match t {
        msg::NEWTABLE => "added table",
        msg::DELTABLE | msg::DESTROYTABLE => "deleted table",
        msg::NEWCHAIN => "added chain",
        msg::DELCHAIN => "deleted chain",
        msg::NEWRULE => "added rule",
        msg::DELRULE => "deleted rule",
        msg::NEWSET => "added set",
        msg::DELSET => "deleted set",
        msg::NEWSETELEM => "added set element",
        msg::DELSETELEM => "deleted set element",
        _ => return None,
    })
}

/// Starts the watcher in the calling thread's network namespace. `target` is
/// the ruleset to restore; it is locked while restoring, so a change in
/// progress (which holds the lock) is never overwritten by an old ruleset.
pub fn spawn(target: Arc<Mutex<Ruleset>>) -> std::io::Result<Watcher> {
    spawn_with(target, None)
}

/// Called after each restore with a JSON document
/// `{"why": "...", "generation": N}` (the daemon turns it into a signal).
pub type OnRestore = Box<dyn Fn(String) + Send>;

/// Like [`spawn`], calling `on_restore` after every successful restore.
pub fn spawn_with(
    target: Arc<Mutex<Ruleset>>,
    on_restore: Option<OnRestore>,
) -> std::io::Result<Watcher> {
    let sock = Socket::open(nl::NETLINK_NETFILTER)?;
    sock.subscribe(NFNLGRP_NFTABLES)?;
    let stop = Arc::new(AtomicBool::new(false));
    let restores = Arc::new(AtomicU64::new(0));
    let (s, r) = (stop.clone(), restores.clone());
    let handle = std::thread::Builder::new()
        .name("netd-watch".into())
        .spawn(move || run(sock, target, s, r, on_restore))?;
    Ok(Watcher {
        stop,
        restores,
        handle: Some(handle),
    })
}

fn restore(target: &Mutex<Ruleset>, restores: &AtomicU64, why: &str, on: &Option<OnRestore>) {
    let rs = match target.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    match nft::apply(&rs) {
        Ok(rep) => {
            restores.fetch_add(1, Ordering::SeqCst);
            if let Some(f) = on {
                let detail = hearth_common::contract::network::Restored {
                    why: why.to_string(),
                    generation: rep.generation,
                };
                f(serde_json::to_string(&detail).unwrap_or_default());
            }
            tracing::warn!(
                generation = rep.generation,
                micros = rep.micros as u64,
                "restored table inet {}: {why}",
                nft::TABLE
            );
        }
        Err(e) => tracing::error!("could not restore table inet {}: {e} ({why})", nft::TABLE),
    }
}

fn run(
    mut sock: Socket,
    target: Arc<Mutex<Ruleset>>,
    stop: Arc<AtomicBool>,
    restores: Arc<AtomicU64>,
    on_restore: Option<OnRestore>,
) {
    let mut pending: BTreeMap<&'static str, usize> = BTreeMap::new();
    while !stop.load(Ordering::SeqCst) {
        let data = match sock.recv(Some(Duration::from_millis(100))) {
            Ok(Some(d)) => d.to_vec(),
            Ok(None) => continue,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                pending.clear();
                tracing::warn!("nftables notifications overflowed; checking table inet hearth");
                let rs = match target.lock() {
                    Ok(g) => g.clone(),
                    Err(p) => p.into_inner().clone(),
                };
                if !nft::is_current(&rs).unwrap_or(false) {
                    restore(
                        &target,
                        &restores,
                        "table differs after missed notifications",
                        &on_restore,
                    );
                }
                continue;
            }
            Err(e) => {
                tracing::error!("nftables watcher: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        for m in nl::Messages::new(&data) {
            if nft::subsys(m.ty) != 10 || m.payload.len() < 4 {
                continue;
            }
            let t = m.ty & 0xff;
            let attrs = &m.payload[4..];
            if t == msg::NEWGEN {
                if pending.is_empty() {
                    continue;
                }
                let pid = nl::find_attr(attrs, NFTA_GEN_PROC_PID)
                    .and_then(nl::attr_be32)
                    .unwrap_or(0) as i32;
                let name = nl::find_attr(attrs, NFTA_GEN_PROC_NAME)
                    .map(nl::attr_str)
                    .unwrap_or_else(|| "?".into());
                if nft::is_own_sender(pid, &name) {
                    pending.clear();
                    continue;
                }
                let what: Vec<String> = pending
                    .iter()
                    .map(|(k, n)| {
                        if *n == 1 {
                            k.to_string()
                        } else {
                            format!("{k} x{n}")
                        }
                    })
                    .collect();
                let why = format!(
                    "process {name:?} (pid {pid}) changed it: {}",
                    what.join(", ")
                );
                pending.clear();
                restore(&target, &restores, &why, &on_restore);
                continue;
            }
            if m.payload[0] != nft::FAMILY_INET && m.payload[0] != 0 {
                continue;
            }
            // Attribute 1 is the table's name in table, chain, rule, set and
            // set-element messages alike.
            let Some(k) = kind(t) else { continue };
            if nl::find_attr(attrs, 1).map(nl::attr_str).as_deref() == Some(nft::TABLE)
                && m.payload[0] == nft::FAMILY_INET
            {
                *pending.entry(k).or_default() += 1;
            }
        }
    }
}
