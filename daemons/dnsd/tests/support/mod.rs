//! Helpers shared by the integration tests: value constructors and `dig`.
#![allow(dead_code, clippy::expect_used)]

use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use hearth_common::types::{Address, DnsName};

pub fn n(s: &str) -> DnsName {
    DnsName::parse(s).expect("valid name")
}
pub fn a(s: &str) -> Address {
    Address::parse(s).expect("valid address")
}

/// A parsed `dig` reply.
#[derive(Debug)]
pub struct Reply {
    pub status: String,
    pub flags: Vec<String>,
    pub answer: Vec<Rr>,
    pub authority: Vec<Rr>,
    pub additional: Vec<Rr>,
    /// The UDP payload size the OPT record advertises, if the reply has one.
    pub edns_udp: Option<u32>,
    /// The size of the reply in bytes, as dig reports it.
    pub size: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rr {
    pub name: String,
    pub ttl: u32,
    pub rtype: String,
    pub data: String,
}

impl Reply {
    pub fn has_flag(&self, f: &str) -> bool {
        self.flags.iter().any(|x| x == f)
    }
    pub fn answer_data(&self, rtype: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .answer
            .iter()
            .filter(|r| r.rtype == rtype)
            .map(|r| r.data.clone())
            .collect();
        v.sort();
        v
    }
    pub fn soa_serial(&self) -> Option<u32> {
        self.answer
            .iter()
            .chain(&self.authority)
            .find(|r| r.rtype == "SOA")
            .and_then(|r| r.data.split_whitespace().nth(2)?.parse().ok())
    }
}

pub fn parse_reply(text: &str) -> Result<Reply> {
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .with_context(|| format!("no status in dig output:\n{text}"))?
        .to_string();
    let flags = text
        .split(";; flags: ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .context("no flags")?
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let section = |title: &str| -> Vec<Rr> {
        let Some(rest) = text.split(&format!(";; {title} SECTION:\n")).nth(1) else {
            return vec![];
        };
        rest.lines()
            .take_while(|l| !l.trim().is_empty())
            .filter(|l| !l.starts_with(';'))
            .filter_map(|l| {
                let mut p = l.split_whitespace();
                let name = p.next()?.to_string();
                let ttl = p.next()?.parse().ok()?;
                let _class = p.next()?;
                let rtype = p.next()?.to_string();
                let data = p.collect::<Vec<_>>().join(" ");
                Some(Rr {
                    name,
                    ttl,
                    rtype,
                    data,
                })
            })
            .collect()
    };
    let edns_udp = text
        .lines()
        .find(|l| l.starts_with("; EDNS:"))
        .and_then(|l| l.split("udp: ").nth(1))
        .and_then(|v| v.trim().parse().ok());
    let size = text
        .split("MSG SIZE  rcvd: ")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok());
    Ok(Reply {
        edns_udp,
        size,
        status,
        flags,
        answer: section("ANSWER"),
        authority: section("AUTHORITY"),
        additional: section("ADDITIONAL"),
    })
}

/// Runs `dig @addr name type` (+extra) and parses the reply.
pub async fn dig(server: SocketAddr, name: &str, rtype: &str, extra: &[&str]) -> Result<Reply> {
    let out = tokio::process::Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string()])
        .args(["+time=3", "+tries=1"])
        .args(extra)
        .arg(name)
        .arg(rtype)
        .kill_on_drop(true)
        .output()
        .await
        .context("running dig (dnsutils)")?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        bail!("dig failed ({}): {text}", out.status);
    }
    parse_reply(&text)
}
