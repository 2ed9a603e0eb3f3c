//! Training data for the interpreter, generated from the catalog's
//! templates and the generic language file, deterministically from a seed.
//!
//! Each example is a request with three labels: the playbook (or none of
//! them), the request's polarity (do it / do NOT do it / only asking about
//! it) and the character spans of each parameter with its role. The
//! generator fills the templates' slots with values of the parameter's type
//! (names from the pools and made-up ones, private IPv4 and IPv6 addresses,
//! ports, durations in every unit and in words), and wraps them: politely,
//! negated, as a hypothetical question, with chatter before and after, with
//! typos in ordinary words, two requests at once (none), inside
//! instructions aimed at the model (none), as a change made that is to be
//! undone or kept (the catalog's `done` clauses; none), as a change that
//! goes on, to stop (the opposite's `ongoing` phrases; the playbook) or to
//! go on with (none). Requests the
//! lexicon lists as served by no playbook are examples of "none".

use std::collections::BTreeMap;

use hearth_common::spec::{
    check_templates, slot_allowed, template_slots, ParamKind, ParamSpec, PlaybookSpec, Risk,
    CONTEXT_SLOTS,
};
use serde::Serialize;

use crate::lexicon::Lexicon;

/// A small deterministic generator (SplitMix64): the same seed gives the
/// same data on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// True with probability p.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    /// One element.
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
    /// A normal sample (Box-Muller), for weight initialisation.
    pub fn normal(&mut self) -> f32 {
        let u1 = self.unit().max(1e-12);
        let u2 = self.unit();
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
}

/// Do it.
pub const DO: usize = 0;
/// Do NOT do it.
pub const DO_NOT: usize = 1;
/// Only asks about doing it (should I, how do I): never a change.
pub const ASKS: usize = 2;
/// How many polarity classes the model outputs ([`DO`], [`DO_NOT`],
/// [`ASKS`], in that order). A request to undo a change is no polarity
/// of it: it is learned as *none of them* ([`Generator::undo_example`]).
pub const POLARITIES: usize = ASKS + 1;

/// One training example.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Example {
    /// The request.
    pub text: String,
    /// Index into [`Labels::intents`]; the last index is "none of them".
    pub intent: usize,
    /// [`DO`], [`DO_NOT`] or [`ASKS`].
    pub polarity: usize,
    /// Byte ranges of parameter values and their role (index into
    /// [`Labels::roles`]).
    pub slots: Vec<(usize, usize, usize)>,
}

/// What the model's outputs mean.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Labels {
    /// Playbook ids, then `none` (no playbook).
    pub intents: Vec<String>,
    /// Parameter names of every playbook (the roles a span can take),
    /// then [`CONTEXT_ROLE`].
    pub roles: Vec<String>,
}

/// The role of a value-like span that is only context, not a value of the
/// plan ("nas moved from {old_address} …", "a network for the {purpose}",
/// the 3 of "we have 3 TVs"). Not a slot name (slots are lower-case
/// letters and '_'), so no parameter can take it.
pub const CONTEXT_ROLE: &str = "(context)";

impl Labels {
    /// The labels of a catalog.
    pub fn of(specs: &[PlaybookSpec]) -> Labels {
        let mut intents: Vec<String> = specs.iter().map(|s| s.id.clone()).collect();
        intents.push(NONE.into());
        let mut roles: Vec<String> = Vec::new();
        for s in specs {
            for p in &s.params {
                if !roles.contains(&p.name) {
                    roles.push(p.name.clone());
                }
            }
        }
        roles.push(CONTEXT_ROLE.into());
        Labels { intents, roles }
    }
    /// Index of [`CONTEXT_ROLE`] among the roles, if these labels have it.
    pub fn context(&self) -> Option<usize> {
        self.roles.iter().position(|r| r == CONTEXT_ROLE)
    }
    /// Index of "none of them".
    pub fn none(&self) -> usize {
        self.intents.len() - 1
    }
    /// Token tags: 0 = outside, 1 + 2r = begins role r, 2 + 2r = inside.
    pub fn n_tags(&self) -> usize {
        1 + 2 * self.roles.len()
    }
}

/// Octets people often number their networks with.
const ROUND_OCTETS: &[usize] = &[0, 1, 2, 3, 10, 20, 50, 100, 168, 200];

/// The "none of them" label.
pub const NONE: &str = "none";

/// A template with its slots filled: the text and the value spans.
#[derive(Debug, Clone)]
struct Filled {
    text: String,
    slots: Vec<(usize, usize, usize)>,
}

impl Filled {
    /// Puts `self` into a wrapper's `{}` (shifting the spans).
    fn wrap(self, wrapper: &str) -> Filled {
        let Some(i) = wrapper.find("{}") else {
            return self;
        };
        let (pre, post) = (&wrapper[..i], &wrapper[i + 2..]);
        let mut body = self.text;
        // A wrapper that starts the sentence keeps the request's first letter
        // as written; one that ends it gets the request in lower case.
        if !pre.is_empty() {
            if let Some(c) = body.chars().next() {
                if c.is_uppercase() && body.chars().nth(1).is_some_and(|d| d.is_lowercase()) {
                    let lower: String = c.to_lowercase().collect();
                    body = format!("{lower}{}", &body[c.len_utf8()..]);
                }
            }
        }
        // Keep only one closing question mark.
        let body = if post.starts_with('?') {
            body.trim_end_matches('?').to_string()
        } else {
            body
        };
        let shift = pre.len();
        Filled {
            text: format!("{pre}{body}{post}"),
            slots: self
                .slots
                .into_iter()
                .map(|(a, b, r)| (a + shift, b + shift, r))
                .collect(),
        }
    }
}

/// The generator.
pub struct Generator<'a> {
    specs: &'a [PlaybookSpec],
    lex: &'a Lexicon,
    labels: Labels,
    rng: Rng,
    /// The stream of the requests to undo a change, apart from `rng`: they
    /// come on top of the other examples, which stay what they were
    /// without them.
    undo_rng: Rng,
    /// The stream of the requests to stop a change that goes on, apart
    /// from both.
    cease_rng: Rng,
    /// The stream of the examples whose duration gives no number of days
    /// (the lexicon's `open_durations`), apart from the others.
    open_rng: Rng,
    /// Whether a duration's slot is filled from `open_durations` now, and
    /// how many were.
    open_durations: bool,
    opened: usize,
}

const COMMON_PORTS: &[u16] = &[
    22, 53, 80, 123, 443, 445, 554, 631, 1883, 3000, 3389, 5000, 5353, 8080, 8083, 8123, 8443,
    8883, 9000, 9100, 32400, 51820,
];

impl<'a> Generator<'a> {
    /// A generator over a catalog, seeded.
    pub fn new(specs: &'a [PlaybookSpec], lex: &'a Lexicon, seed: u64) -> Generator<'a> {
        Generator {
            specs,
            lex,
            labels: Labels::of(specs),
            rng: Rng::new(seed),
            undo_rng: Rng::new(seed ^ UNDO_STREAM),
            cease_rng: Rng::new(seed ^ CEASE_STREAM),
            open_rng: Rng::new(seed ^ OPEN_STREAM),
            open_durations: false,
            opened: 0,
        }
    }

    /// The labels of the examples.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    fn made_up_word(&mut self) -> String {
        let n = 2 + self.rng.below(2);
        let mut w: String = (0..n)
            .map(|_| self.rng.pick(&self.lex.pools.syllables).clone())
            .collect();
        if self.rng.chance(0.3) {
            w.push_str(&format!("{}", self.rng.below(9) + 1));
        }
        w
    }

    fn domain_surface(&mut self) -> String {
        if self.rng.chance(0.25) {
            self.made_up_word()
        } else {
            self.rng.pick(&self.lex.pools.domains).clone()
        }
    }

    /// A name for an existing domain as the model sees it: mostly one of
    /// the placeholders the engine puts where a request names an existing
    /// domain (one not yet used in this example); sometimes a name, as a
    /// domain the context does not hold is left as written.
    fn existing_domain(&mut self, taken: &[String]) -> String {
        if self.rng.chance(0.85) {
            let free: Vec<String> = self
                .lex
                .pools
                .placeholders
                .iter()
                .filter(|p| !taken.contains(p))
                .cloned()
                .collect();
            if !free.is_empty() {
                return self.rng.pick(&free).clone();
            }
        }
        self.domain_surface()
    }

    /// A new domain's name: as written, or (rarely) a placeholder, as a
    /// request that names an existing domain for a new one is masked.
    fn new_domain(&mut self, taken: &[String]) -> String {
        if self.rng.chance(0.08) {
            self.existing_domain(taken)
        } else {
            self.domain_surface()
        }
    }

    fn host(&mut self) -> String {
        if self.rng.chance(0.3) {
            let w = self.made_up_word();
            if self.rng.chance(0.3) {
                format!("{w}-{}", self.made_up_word())
            } else {
                w
            }
        } else {
            self.rng.pick(&self.lex.pools.hosts).clone()
        }
    }

    fn dns_name(&mut self) -> String {
        let host = self.host();
        let zone = self.rng.pick(&self.lex.pools.zones).clone();
        if self.rng.chance(0.1) {
            format!("{host}.{}.{zone}", self.made_up_word())
        } else {
            format!("{host}.{zone}")
        }
    }

    /// A device as an owner names it: the host name it sent (most often),
    /// its name in the home zone, or its MAC address as a label or a tool
    /// prints it.
    fn device(&mut self) -> String {
        match self.rng.below(10) {
            0..=5 => self.host(),
            6 => self.dns_name(),
            _ => {
                let o: Vec<String> = (0..6)
                    .map(|_| format!("{:02x}", self.rng.below(256)))
                    .collect();
                match self.rng.below(3) {
                    0 => o.join("-").to_uppercase(),
                    1 => o.join(":").to_uppercase(),
                    _ => o.join(":"),
                }
            }
        }
    }

    /// An IPv4 address of a private range, its inner octets often the
    /// small or round numbers people number networks with ("10.0.0.12").
    fn ipv4(&mut self) -> String {
        let net = match self.rng.below(4) {
            0 => format!("10.{}.{}", self.octet(), self.octet()),
            1 => format!("172.{}.{}", 16 + self.rng.below(16), self.octet()),
            _ => format!("192.168.{}", self.octet()),
        };
        format!("{net}.{}", 1 + self.rng.below(254))
    }

    fn octet(&mut self) -> usize {
        if self.rng.chance(0.4) {
            *self.rng.pick(ROUND_OCTETS)
        } else {
            self.rng.below(256)
        }
    }

    /// [`Generator::ipv4`], half the time in the network (/24) of an IPv4
    /// address already written in the request (an old and a new address
    /// of one host usually share it).
    fn ipv4_near(&mut self, taken: &[String]) -> String {
        let net = taken
            .iter()
            .filter(|t| t.parse::<std::net::Ipv4Addr>().is_ok())
            .filter_map(|t| t.rsplit_once('.').map(|(n, _)| n.to_string()))
            .next_back();
        match net {
            Some(n) if self.rng.chance(0.5) => format!("{n}.{}", 1 + self.rng.below(254)),
            _ => self.ipv4(),
        }
    }

    fn ipv6(&mut self) -> String {
        let r = &mut self.rng;
        match r.below(3) {
            0 => format!(
                "fd{:02x}:{:x}::{:x}",
                r.below(256),
                r.below(0xffff),
                1 + r.below(0xfff)
            ),
            1 => format!("2001:db8:{:x}::{:x}", r.below(0xffff), 1 + r.below(0xffff)),
            _ => format!(
                "fd00:{:x}:{:x}:{:x}::{:x}",
                r.below(0xffff),
                r.below(0xffff),
                r.below(0xffff),
                1 + r.below(0xff)
            ),
        }
    }

    fn cidr(&mut self) -> String {
        let prefix = [16, 20, 22, 23, 24, 24, 24, 25, 26, 27, 28][self.rng.below(11)];
        let r = &mut self.rng;
        let addr: u32 = match r.below(3) {
            0 => (10 << 24) | ((r.below(256) as u32) << 16) | ((r.below(256) as u32) << 8),
            1 => (172 << 24) | (((16 + r.below(16)) as u32) << 16) | ((r.below(256) as u32) << 8),
            _ => (192 << 24) | (168 << 16) | ((r.below(256) as u32) << 8),
        };
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        };
        let net = std::net::Ipv4Addr::from(addr & mask);
        format!("{net}/{prefix}")
    }

    fn duration(&mut self, p: &ParamSpec) -> String {
        if self.open_durations && !self.lex.pools.open_durations.is_empty() {
            self.opened += 1;
            return self.rng.pick(&self.lex.pools.open_durations).clone();
        }
        // Sometimes two amounts that add up ("a year and two months").
        if self.rng.chance(0.06) {
            let first = self.one_duration(p);
            let second = self.one_duration(p);
            return match self.lex.numbers.fillers.first() {
                Some(f) if self.rng.chance(0.7) => format!("{first} {f} {second}"),
                _ => format!("{first} {second}"),
            };
        }
        self.one_duration(p)
    }

    fn one_duration(&mut self, p: &ParamSpec) -> String {
        let max = match p.kind {
            ParamKind::Integer { max, .. } => max.max(1) as u64,
            _ => 398,
        };
        let units: Vec<(&String, &u64)> = self.lex.days.iter().collect();
        let (unit, per) = *self.rng.pick(&units);
        // Mostly in range; sometimes beyond it (the value is then refused
        // by validation, but it is still the duration's span).
        let top = (max * 2 / per).max(1);
        let k = 1 + self.rng.below(top.min(400) as usize) as u64;
        let k = if self.rng.chance(0.6) {
            k.min((max / per).max(1))
        } else {
            k
        };
        let number = if self.rng.chance(0.35) {
            self.lex.number_in_words(k).unwrap_or_else(|| k.to_string())
        } else {
            k.to_string()
        };
        let unit_name = if k != 1 || unit.len() <= 3 {
            unit.clone()
        } else {
            unit.trim_end_matches('s').to_string()
        };
        let digits = number.chars().all(|c| c.is_ascii_digit());
        if unit.len() <= 3 && digits && self.rng.chance(0.6) {
            format!("{number}{unit_name}")
        } else if unit.len() > 3 && digits && self.rng.chance(0.15) {
            // "a 2-month certificate"
            format!("{number}-{}", unit.trim_end_matches('s'))
        } else if *per == 1 && self.rng.chance(0.3) {
            number
        } else {
            format!("{number} {unit_name}")
        }
    }

    fn value(&mut self, p: &ParamSpec, taken: &[String]) -> String {
        for _ in 0..8 {
            let v = match &p.kind {
                ParamKind::ExistingDomain => self.existing_domain(taken),
                ParamKind::NewDomain => self.new_domain(taken),
                ParamKind::DnsName => self.dns_name(),
                ParamKind::Device => self.device(),
                ParamKind::IpAddress => {
                    if self.rng.chance(0.25) {
                        self.ipv6()
                    } else {
                        self.ipv4_near(taken)
                    }
                }
                ParamKind::Ipv4Address => self.ipv4_near(taken),
                ParamKind::Ipv6Address => self.ipv6(),
                ParamKind::Ipv4Cidr => self.cidr(),
                ParamKind::Port => {
                    if self.rng.chance(0.6) {
                        self.rng.pick(COMMON_PORTS).to_string()
                    } else {
                        (1 + self.rng.below(65535)).to_string()
                    }
                }
                ParamKind::Protocol => {
                    let p = self.rng.pick(&self.lex.pools.protocols).clone();
                    if self.rng.chance(0.25) {
                        p.to_uppercase()
                    } else {
                        p
                    }
                }
                ParamKind::Integer { min, max } => {
                    if p.unit.is_some() {
                        self.duration(p)
                    } else {
                        let span = (max - min).clamp(0, 10_000) as usize + 1;
                        (*min + self.rng.below(span) as i64).to_string()
                    }
                }
                ParamKind::Enum { values } => self.rng.pick(values).clone(),
            };
            if !taken.contains(&v) {
                return v;
            }
        }
        self.made_up_word()
    }

    /// Fills a template's slots from the spec's parameters.
    fn fill(&mut self, spec: &PlaybookSpec, template: &str, tag: bool) -> Filled {
        self.fill_doubled(spec, template, tag, None)
    }

    /// [`Generator::fill`], with slot `double.0` given two values joined
    /// by the wrapper `double.1` ("both {} and {}").
    fn fill_doubled(
        &mut self,
        spec: &PlaybookSpec,
        template: &str,
        tag: bool,
        double: Option<(&str, &str)>,
    ) -> Filled {
        let mut text = String::new();
        let mut slots = Vec::new();
        let mut taken: Vec<String> = Vec::new();
        let mut rest = template;
        while let Some(i) = rest.find('{') {
            text.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let j = after.find('}').unwrap_or(after.len());
            let name = &after[..j];
            let param = spec.params.iter().find(|p| p.name == name);
            let mut v = match param {
                Some(p) => self.value(p, &taken),
                None => self.filler(name, &taken),
            };
            if let (Some((slot, wrapper)), Some(p)) = (double, param) {
                if slot == name {
                    taken.push(v.clone());
                    let second = self.value(p, &taken);
                    v = wrapper.replacen("{}", &v, 1).replacen("{}", &second, 1);
                }
            }
            taken.push(v.clone());
            let start = text.len();
            text.push_str(&v);
            let end = text.len();
            if tag {
                let role = match param {
                    Some(_) => self.labels.roles.iter().position(|r| r == name),
                    None if CONTEXT_SLOTS.contains(&name) => self.labels.context(),
                    None => None,
                };
                if let Some(r) = role {
                    slots.push((start, end, r));
                }
            }
            rest = after.get(j + 1..).unwrap_or("");
            let existing = match param {
                Some(p) => p.kind == ParamKind::ExistingDomain,
                None => name == "domain",
            };
            if existing {
                self.domain_noun(&mut text, rest);
            }
        }
        text.push_str(rest);
        Filled { text, slots }
    }

    /// Sometimes writes a noun after an existing domain's name ("bravo
    /// zone"), outside its span, unless the template puts one there.
    fn domain_noun(&mut self, text: &mut String, rest: &str) {
        let nouns = &self.lex.pools.domain_nouns;
        if nouns.is_empty() || !self.rng.chance(0.15) {
            return;
        }
        let next = rest
            .trim_start()
            .split(|c: char| !c.is_alphanumeric())
            .next()
            .unwrap_or("");
        if nouns.iter().any(|n| n.eq_ignore_ascii_case(next)) {
            return;
        }
        let noun = self.rng.pick(nouns).clone();
        text.push(' ');
        text.push_str(&noun);
    }

    /// Slots of the lexicon's out-of-scope templates.
    fn filler(&mut self, name: &str, taken: &[String]) -> String {
        match name {
            "domain" => self.existing_domain(taken),
            "host" => {
                if self.rng.chance(0.5) {
                    self.dns_name()
                } else {
                    self.host()
                }
            }
            "number" => (1 + self.rng.below(500)).to_string(),
            // What a network is for; a quarter of the time as masked (the
            // word is an existing domain's name, "a network for the kids"
            // when kids exists), as the run-time reads it.
            "purpose" => match self.rng.below(8) {
                0 | 1 => self.existing_domain(taken),
                2 => self.made_up_word(),
                _ => self.rng.pick(&self.lex.pools.purposes).clone(),
            },
            // An address the request gives as context only (what a record
            // pointed at before), never a value.
            "old_address" => {
                if self.rng.chance(0.25) {
                    self.ipv6()
                } else {
                    self.ipv4_near(taken)
                }
            }
            _ => self.made_up_word(),
        }
    }

    fn intent_of(&self, id: &str) -> usize {
        self.labels
            .intents
            .iter()
            .position(|i| i == id)
            .unwrap_or(self.labels.none())
    }

    /// Changes the case and adds typos to words outside the slots.
    fn noise(&mut self, f: Filled) -> Filled {
        let mut f = f;
        if self.rng.chance(0.12) {
            f = self.typo(f);
        }
        let r = self.rng.unit();
        if r < 0.2 {
            f.text = f.text.to_lowercase();
        } else if r < 0.5 {
            let mut cs = f.text.chars();
            if let Some(c) = cs.next() {
                let up: String = c.to_uppercase().collect();
                if up.len() == c.len_utf8() {
                    f.text = format!("{up}{}", cs.as_str());
                }
            }
        } else if r < 0.53 {
            f.text = f.text.to_uppercase();
        }
        if f.text.len() > 1 && self.rng.chance(0.15) && !f.text.ends_with(['?', '!', '.']) {
            f.text.push_str([".", "!", "?"][self.rng.below(3).min(1)]);
        }
        f
    }

    fn typo(&mut self, f: Filled) -> Filled {
        // Words of four letters or more outside every slot.
        let bytes = f.text.as_bytes();
        let mut words = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i].is_ascii_alphabetic() {
                let s = i;
                while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                    i += 1;
                }
                let inside = f.slots.iter().any(|&(a, b, _)| s < b && i > a);
                if i - s >= 4 && !inside {
                    words.push((s, i));
                }
            } else {
                i += 1;
            }
        }
        if words.is_empty() {
            return f;
        }
        let (s, e) = *self.rng.pick(&words);
        let k = s + 1 + self.rng.below(e - s - 2);
        let mut t = f.text.clone();
        let delta: isize = match self.rng.below(3) {
            0 => {
                t.remove(k);
                -1
            }
            1 => {
                let c = t.as_bytes()[k] as char;
                t.insert(k, c);
                1
            }
            _ => {
                let (a, b) = (t.as_bytes()[k] as char, t.as_bytes()[k + 1] as char);
                t.replace_range(k..k + 2, &format!("{b}{a}"));
                0
            }
        };
        let shift = |x: usize| {
            if x > k {
                (x as isize + delta) as usize
            } else {
                x
            }
        };
        Filled {
            text: t,
            slots: f
                .slots
                .into_iter()
                .map(|(a, b, r)| (shift(a), shift(b), r))
                .collect(),
        }
    }

    fn chatter(&mut self, mut f: Filled) -> Filled {
        if self.rng.chance(0.25) {
            let pre = self.rng.pick(&self.lex.augment.chatter_before).clone();
            f = f.wrap(&format!("{pre}{{}}"));
            self.context_words(&mut f, 0, pre.len());
        }
        if self.rng.chance(0.2) {
            let post = self.rng.pick(&self.lex.augment.chatter_after).clone();
            f = f.wrap(&format!("{{}}{post}"));
            let end = f.text.len();
            self.context_words(&mut f, end - post.len(), end);
        }
        f
    }

    /// Tags the words with a digit in `start..end` (chatter the generator
    /// put around a request: "we have 3 TVs") as context.
    fn context_words(&self, f: &mut Filled, start: usize, end: usize) {
        let Some(r) = self.labels.context() else {
            return;
        };
        let part = &f.text[start..end];
        let mut pos = 0;
        for w in part.split_whitespace() {
            let s = part[pos..].find(w).map_or(pos, |i| pos + i);
            pos = s + w.len();
            let lead = w.find(|c: char| c.is_alphanumeric()).unwrap_or(0);
            let core = w.trim_matches(|c: char| !c.is_alphanumeric());
            if core.chars().any(|c| c.is_ascii_digit()) {
                let a = start + s + lead;
                f.slots.push((a, a + core.len(), r));
            }
        }
    }

    fn example(&mut self, f: Filled, intent: usize, polarity: usize) -> Example {
        let f = self.noise(f);
        Example {
            text: f.text,
            intent,
            polarity,
            slots: f.slots,
        }
    }

    /// One example for playbook `spec`.
    fn for_playbook(&mut self, spec: &PlaybookSpec) -> Example {
        let lang = &spec.language;
        let me = self.intent_of(&spec.id);
        let kinds = [
            (!lang.utterances.is_empty(), 6usize),
            (!lang.statements.is_empty(), 3),
            (!lang.questions.is_empty(), 2),
            (!lang.incomplete.is_empty(), 1),
            (!lang.reports.is_empty(), 1),
        ];
        let total: usize = kinds.iter().filter(|k| k.0).map(|k| k.1).sum();
        let mut roll = self.rng.below(total.max(1));
        let mut kind = 0;
        for (i, (ok, w)) in kinds.iter().enumerate() {
            if !ok {
                continue;
            }
            if roll < *w {
                kind = i;
                break;
            }
            roll -= w;
        }
        let a = &self.lex.augment;
        match kind {
            0 => {
                let t = self.rng.pick(&lang.utterances).clone();
                let r = self.rng.unit();
                if r < 0.22 {
                    let w = self.rng.pick(&a.negations).clone();
                    let f = self.fill(spec, &t, true).wrap(&w);
                    let f = self.chatter(f);
                    self.example(f, me, DO_NOT)
                } else if r < 0.34 && spec.risk != Risk::Read {
                    let w = self.rng.pick(&a.hypotheticals).clone();
                    let f = self.fill(spec, &t, true).wrap(&w);
                    let f = self.chatter(f);
                    self.example(f, me, ASKS)
                } else if r < 0.36 {
                    let w = self.rng.pick(&a.not_negations).clone();
                    let f = self.fill(spec, &t, true).wrap(&w);
                    self.example(f, me, DO)
                } else if r < 0.42 && !a.set_aside.is_empty() {
                    let f = self.fill(spec, &t, true);
                    let f = self.set_aside(spec, f);
                    self.example(f, me, DO)
                } else if r < 0.70 {
                    let w = self.rng.pick(&a.polite).clone();
                    let f = self.fill(spec, &t, true).wrap(&w);
                    let f = self.chatter(f);
                    self.example(f, me, DO)
                } else {
                    let f = self.fill(spec, &t, true);
                    let f = self.chatter(f);
                    self.example(f, me, DO)
                }
            }
            1 => {
                let t = self.rng.pick(&lang.statements).clone();
                let f = self.fill(spec, &t, true);
                let f = if self.rng.chance(0.06) {
                    self.set_aside(spec, f)
                } else {
                    self.chatter(f)
                };
                self.example(f, me, DO)
            }
            3 => {
                // A request that leaves a value out: still this playbook
                // (the interpreter then says what is missing).
                let t = self.rng.pick(&lang.incomplete).clone();
                let f = self.fill(spec, &t, true);
                let f = if self.rng.chance(0.4) {
                    let w = self.rng.pick(&a.polite).clone();
                    f.wrap(&w)
                } else {
                    f
                };
                let f = self.chatter(f);
                self.example(f, me, DO)
            }
            4 => {
                // A report of a problem: alone, it asks about the change
                // that mends it (offered, never planned); followed by a
                // request for it, it is one.
                let t = self.rng.pick(&lang.reports).clone();
                let f = self.fill(spec, &t, true);
                if !a.report_requests.is_empty() && self.rng.chance(0.4) {
                    let w = self.rng.pick(&a.report_requests).clone();
                    let f = self.chatter(f.wrap(&w));
                    self.example(f, me, DO)
                } else {
                    let f = self.chatter(f);
                    self.example(f, me, ASKS)
                }
            }
            _ => {
                let t = self.rng.pick(&lang.questions).clone();
                let answered = lang.answered_by.as_deref().map(|id| self.intent_of(id));
                if self.rng.chance(0.45) || answered.is_none() {
                    let suffix = self.rng.pick(&a.fix_suffixes).clone();
                    let f = self.fill(spec, &t, true).wrap(&format!("{{}} {suffix}"));
                    let f = self.chatter(f);
                    self.example(f, me, DO)
                } else {
                    let f = self.fill(spec, &t, false);
                    let f = self.chatter(f);
                    self.example(f, answered.unwrap_or(me), DO)
                }
            }
        }
    }

    /// The playbook whose values fill `spec`'s `done` clauses (its
    /// `opposite`), when `spec` has them and the language file has
    /// requests to undo.
    fn undone_by(&self, spec: &PlaybookSpec) -> Option<&'a PlaybookSpec> {
        let (a, lang) = (&self.lex.augment, &spec.language);
        if (lang.done.is_empty() || a.undo.is_empty())
            && (lang.done_nouns.is_empty() || a.undo_nouns.is_empty())
        {
            return None;
        }
        self.opposite_of(spec)
    }

    /// The catalog's playbook that is `spec`'s `opposite`.
    fn opposite_of(&self, spec: &PlaybookSpec) -> Option<&'a PlaybookSpec> {
        let opp = spec.language.opposite.as_deref()?;
        self.specs.iter().find(|s| s.id == opp)
    }

    /// A request to undo a change of `spec`: one of its `done` clauses in
    /// a request to undo it, one of its `done_nouns` in a request to undo
    /// the thing named, or one of its own requests in a request to undo
    /// what was asked earlier; sometimes a change made to be kept. All are
    /// *none of them*, no value tagged: the interpreter refuses them.
    /// Learned as `spec` (with a polarity *undo* planned as `opposite`),
    /// the polarity head alone stood between a request to undo and the
    /// change it names, and wording no template has was read as that
    /// change (decision 070). The values are `opp`'s (the clauses name its
    /// parameters): a deleted domain is a name that no longer exists.
    fn undo_example(&mut self, spec: &PlaybookSpec, opp: &PlaybookSpec) -> Example {
        let a = &self.lex.augment;
        let lang = &spec.language;
        let fits = |t: &String| {
            template_slots(t).is_ok_and(|slots| slots.iter().all(|n| slot_allowed(opp, n)))
        };
        let asked: Vec<String> = lang
            .utterances
            .iter()
            .filter(|t| fits(t))
            .cloned()
            .collect();
        // Which templates, wrapped by which requests, how often: a change
        // told as a clause, named as a thing, or asked for earlier, to
        // undo; a clause or a thing, to keep.
        let forms: [(&[String], &[String]); 5] = [
            (&lang.done, &a.undo),
            (&lang.done_nouns, &a.undo_nouns),
            (&asked, &a.undo_asked),
            (&lang.done, &a.undo_refused),
            (&lang.done_nouns, &a.undo_nouns_refused),
        ];
        let weights = [5, 4, 3, 1, 1];
        let open: Vec<usize> = (0..forms.len())
            .filter(|&i| !forms[i].0.is_empty() && !forms[i].1.is_empty())
            .collect();
        let total: usize = open.iter().map(|&i| weights[i]).sum();
        let mut roll = self.rng.below(total.max(1));
        let mut pick = open[0];
        for &i in &open {
            if roll < weights[i] {
                pick = i;
                break;
            }
            roll -= weights[i];
        }
        let (templates, wrappers) = forms[pick];
        let t = self.rng.pick(templates).clone();
        let w = self.rng.pick(wrappers).clone();
        let mut f = self.fill(opp, &t, false).wrap(&w);
        f.slots.clear();
        let f = self.chatter(f);
        let none = self.labels.none();
        self.example(f, none, DO)
    }

    /// The `ongoing` phrases of `spec`'s opposite (their slots name
    /// parameters of both, [`check_catalog`]), when it has some and the
    /// language file has requests to stop.
    fn ceased_by(&self, spec: &PlaybookSpec) -> Option<&'a [String]> {
        if self.lex.augment.cease.is_empty() {
            return None;
        }
        let opp = self.opposite_of(spec)?;
        (!opp.language.ongoing.is_empty()).then_some(opp.language.ongoing.as_slice())
    }

    /// A request to stop the opposite's change as it goes on ("quit blocking
    /// bravo from charlie"): a request for `spec`, its values tagged for
    /// `spec`'s parameters of the same name. Learned from the first word
    /// that names an action ("blocking"), it was the opposite of what was
    /// asked. Sometimes a request to go on with it ("keep blocking …"):
    /// *none of them*, no value tagged.
    fn cease_example(&mut self, spec: &PlaybookSpec, ongoing: &[String]) -> Example {
        let a = &self.lex.augment;
        let t = self.rng.pick(ongoing).clone();
        let keep = !a.cease_refused.is_empty() && self.rng.below(5) == 0;
        if keep {
            let w = self.rng.pick(&a.cease_refused).clone();
            let mut f = self.fill(spec, &t, false).wrap(&w);
            f.slots.clear();
            let f = self.chatter(f);
            let none = self.labels.none();
            self.example(f, none, DO)
        } else {
            let w = self.rng.pick(&a.cease).clone();
            let f = self.fill(spec, &t, true).wrap(&w);
            let f = self.chatter(f);
            let me = self.intent_of(&spec.id);
            self.example(f, me, DO)
        }
    }

    /// Puts a request beside a clause that sets another action aside
    /// ("don't {other}, just {}"): another playbook's request (values
    /// untagged) or one of the lexicon's `set_aside_others`. The request
    /// is still what is asked.
    fn set_aside(&mut self, spec: &PlaybookSpec, f: Filled) -> Filled {
        let a = &self.lex.augment;
        let w = self.rng.pick(&a.set_aside).clone();
        let other = if !a.set_aside_others.is_empty() && self.rng.chance(0.35) {
            self.rng.pick(&a.set_aside_others).clone()
        } else {
            let specs = self.specs;
            let with: Vec<&PlaybookSpec> = specs
                .iter()
                .filter(|s| s.id != spec.id && !s.language.utterances.is_empty())
                .collect();
            if with.is_empty() {
                return f;
            }
            let s = *self.rng.pick(&with);
            let t = self.rng.pick(&s.language.utterances).clone();
            self.fill(s, &t, false).text
        };
        f.wrap(&w.replacen("{other}", &other, 1))
    }

    /// A random imperative request of any playbook, with its spans (for
    /// "several" and injections).
    fn any_utterance(&mut self) -> Filled {
        self.any_utterance_of().1
    }

    /// [`Generator::any_utterance`], with the playbook it asks for.
    fn any_utterance_of(&mut self) -> (String, Filled) {
        let with: Vec<&PlaybookSpec> = self
            .specs
            .iter()
            .filter(|s| !s.language.utterances.is_empty())
            .collect();
        let spec = *self.rng.pick(&with);
        let t = self.rng.pick(&spec.language.utterances).clone();
        let mut f = self.fill(spec, &t, false);
        f.slots.clear();
        (spec.id.clone(), f)
    }

    /// [`Generator::any_utterance`]; when `refer`, a request of another
    /// playbook than `first`, with the first value slot of a name (a DNS
    /// name or a domain) written as one of the lexicon's pronouns (one
    /// playbook's request in two verbs, "add … and point it at …", stays
    /// that playbook's).
    fn any_utterance_referring(&mut self, refer: bool, first: &str) -> Filled {
        let pronouns = &self.lex.pools.pronouns;
        if !refer || pronouns.is_empty() {
            return self.any_utterance();
        }
        let with: Vec<(&PlaybookSpec, &String, String)> = self
            .specs
            .iter()
            .filter(|s| s.id != first)
            .flat_map(|s| s.language.utterances.iter().map(move |t| (s, t)))
            .filter_map(|(s, t)| {
                let slot = template_slots(t).ok()?.into_iter().find(|n| {
                    s.params.iter().any(|p| {
                        &p.name == n
                            && matches!(
                                p.kind,
                                ParamKind::DnsName
                                    | ParamKind::ExistingDomain
                                    | ParamKind::NewDomain
                            )
                    })
                })?;
                Some((s, t, slot))
            })
            .collect();
        if with.is_empty() {
            return self.any_utterance();
        }
        let (spec, t, slot) = self.rng.pick(&with).clone();
        let pronoun = self.rng.pick(pronouns).clone();
        let t = t.replacen(&format!("{{{slot}}}"), &pronoun, 1);
        let mut f = self.fill(spec, &t, false);
        f.slots.clear();
        f
    }

    /// One example of "none of them".
    fn none_example(&mut self) -> Example {
        let none = self.labels.none();
        let a = &self.lex.augment;
        let r = self.rng.unit();
        if r < 0.55 {
            let t = self.rng.pick(&a.out_of_scope).clone();
            let empty = PlaybookSpec {
                id: String::new(),
                version: 0,
                description: String::new(),
                examples: Vec::new(),
                risk: Risk::Read,
                params: Vec::new(),
                language: Default::default(),
            };
            let mut f = self.fill(&empty, &t, false);
            if self.rng.chance(0.3) {
                let w = self.rng.pick(&a.polite).clone();
                f = f.wrap(&w);
            }
            let f = self.chatter(f);
            self.example(f, none, DO)
        } else if r < 0.65 && !a.several_values.is_empty() {
            // One playbook's request with two values for one parameter.
            let with: Vec<(&PlaybookSpec, &String, Vec<String>)> = self
                .specs
                .iter()
                .flat_map(|s| s.language.utterances.iter().map(move |t| (s, t)))
                .filter_map(|(s, t)| {
                    let slots = template_slots(t).ok()?;
                    (!slots.is_empty()).then_some((s, t, slots))
                })
                .collect();
            let (spec, t, slots) = self.rng.pick(&with).clone();
            let w = self.rng.pick(&a.several_values).clone();
            let slot = self.rng.pick(&slots).clone();
            let f = self.fill_doubled(spec, t, false, Some((&slot, &w)));
            let f = self.chatter(f);
            self.example(f, none, DO)
        } else if r < 0.85 {
            let w = self.rng.pick(&a.several).clone();
            // A third of the time the second request names no value of
            // its own but refers back ("… and give it a certificate").
            let refer = self.rng.chance(0.33);
            let (first, x) = self.any_utterance_of();
            let y = self.any_utterance_referring(refer, &first);
            let i = w.find("{}").unwrap_or(0);
            let w2 = format!("{}{}{}", &w[..i], x.text, &w[i + 2..]);
            let f = y.wrap(&w2);
            self.example(f, none, DO)
        } else {
            let w = self.rng.pick(&a.injections).clone();
            let f = self.any_utterance().wrap(&w);
            self.example(f, none, DO)
        }
    }

    /// `per_playbook` examples of each playbook that has templates (more
    /// for one with two parameters of one type, see [`examples_for`]),
    /// and `none` examples of none of them, in a fixed order.
    pub fn generate(&mut self, per_playbook: usize, none: usize) -> Vec<Example> {
        let mut out = Vec::new();
        let specs = self.specs;
        for spec in specs {
            if spec.language.is_empty() {
                continue;
            }
            for _ in 0..examples_for(spec, per_playbook) {
                out.push(self.for_playbook(spec));
            }
        }
        for _ in 0..none {
            out.push(self.none_example());
        }
        // Then the requests to undo a change, from their own stream.
        std::mem::swap(&mut self.rng, &mut self.undo_rng);
        for spec in specs {
            if let Some(opp) = self.undone_by(spec) {
                for _ in 0..examples_for(spec, per_playbook) / UNDO_SHARE {
                    out.push(self.undo_example(spec, opp));
                }
            }
        }
        std::mem::swap(&mut self.rng, &mut self.undo_rng);
        // Then the requests to stop the opposite, from theirs.
        std::mem::swap(&mut self.rng, &mut self.cease_rng);
        for spec in specs {
            if let Some(ongoing) = self.ceased_by(spec) {
                for _ in 0..examples_for(spec, per_playbook) / CEASE_SHARE {
                    out.push(self.cease_example(spec, ongoing));
                }
            }
        }
        std::mem::swap(&mut self.rng, &mut self.cease_rng);
        // Then examples whose duration gives no number of days, from
        // theirs: a playbook's own examples drawn until one wrote such a
        // duration (a few tries; templates without a duration give none).
        std::mem::swap(&mut self.rng, &mut self.open_rng);
        self.open_durations = true;
        for spec in specs {
            if spec.language.is_empty() || !spec.params.iter().any(|p| p.unit.is_some()) {
                continue;
            }
            for _ in 0..examples_for(spec, per_playbook) / OPEN_SHARE {
                for _ in 0..8 {
                    let before = self.opened;
                    let ex = self.for_playbook(spec);
                    if self.opened > before {
                        out.push(ex);
                        break;
                    }
                }
            }
        }
        self.open_durations = false;
        std::mem::swap(&mut self.rng, &mut self.open_rng);
        out
    }
}

/// Examples whose duration gives no number of days: one for every this
/// many of a playbook's other examples (of a playbook counted in days), on
/// top of them.
pub const OPEN_SHARE: usize = 12;

/// Mixed into the seed of the stream of those examples.
const OPEN_STREAM: u64 = 0x6f70_656e;

/// Requests to undo a playbook's change: one for every this many of its
/// other examples, on top of them.
pub const UNDO_SHARE: usize = 12;

/// Mixed into the seed of the stream of requests to undo a change.
const UNDO_STREAM: u64 = 0x756e_646f;

/// Requests to stop a playbook's opposite: one for every this many of its
/// other examples, on top of them.
pub const CEASE_SHARE: usize = 12;

/// Mixed into the seed of the stream of requests to stop a change.
const CEASE_STREAM: u64 = 0x0063_6561_7365;

/// How many examples a playbook gets: `per_playbook`, and twice more for
/// each pair of its parameters of one type (from and to, an alias's name
/// and target). Which of the two a value is shows only in where it stands
/// in the request, and `per_playbook` examples left the tagger unsure of it
/// on the very templates it was trained on (decision 070, recipe 9).
pub fn examples_for(spec: &PlaybookSpec, per_playbook: usize) -> usize {
    let p = &spec.params;
    let pairs = (0..p.len())
        .flat_map(|i| (i + 1..p.len()).map(move |j| (i, j)))
        .filter(|&(i, j)| p[i].kind == p[j].kind)
        .count();
    per_playbook * (1 + 2 * pairs)
}

/// Checks that every template names only its playbook's parameters and
/// that `answered_by` names a read playbook of the catalog.
pub fn check_catalog(specs: &[PlaybookSpec]) -> Result<(), String> {
    let by_id: BTreeMap<&str, &PlaybookSpec> = specs.iter().map(|s| (s.id.as_str(), s)).collect();
    for s in specs {
        check_templates(s)?;
        // A change told as made (slots: the opposite's parameters) and as
        // going on (slots: parameters of both).
        let lang = &s.language;
        let done = lang.done.iter().chain(&lang.done_nouns).map(|t| (t, false));
        for (t, own) in done.chain(lang.ongoing.iter().map(|t| (t, true))) {
            let opp = lang.opposite.as_deref().and_then(|o| by_id.get(o));
            let Some(opp) = opp else {
                return Err(format!(
                    "{}: done clauses and ongoing phrases need an opposite in the catalog",
                    s.id
                ));
            };
            let slots = template_slots(t).map_err(|e| format!("{}: {e}", s.id))?;
            if let Some(n) = slots
                .iter()
                .find(|n| !slot_allowed(opp, n) || (own && !slot_allowed(s, n)))
            {
                return Err(format!(
                    "{}: {t:?} names {{{n}}}, which is not a parameter of {}{}",
                    s.id,
                    opp.id,
                    if own { " and of the playbook" } else { "" }
                ));
            }
        }
        if let Some(a) = &s.language.answered_by {
            match by_id.get(a.as_str()) {
                Some(r) if r.risk == Risk::Read => {}
                _ => return Err(format!("{}: answered_by {a} is not a read playbook", s.id)),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn setup() -> (Vec<PlaybookSpec>, Lexicon) {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../catalog");
        let specs = crate::specs::load_dir(&root).unwrap();
        let lex = Lexicon::load(&root.join("language/en.toml")).unwrap();
        (specs, lex)
    }

    /// A report of a problem alone is learned as asking about the playbook
    /// that mends it (offered, never planned), with its values tagged;
    /// followed by one of the language file's requests to mend it, as a
    /// request for it.
    #[test]
    fn a_report_alone_asks_and_with_a_request_to_mend_it_asks_for_it() {
        let (specs, lex) = setup();
        let mut spec = specs
            .iter()
            .find(|s| s.id == "pki.revoke_certificate")
            .unwrap()
            .clone();
        assert!(!spec.language.reports.is_empty());
        // Only the reports, so every example is one.
        spec.language.utterances.clear();
        spec.language.statements.clear();
        spec.language.questions.clear();
        spec.language.incomplete.clear();
        spec.language.done.clear();
        spec.language.done_nouns.clear();
        let mut g = Generator::new(&specs, &lex, 3);
        let me = g.intent_of(&spec.id);
        let name = g.labels.roles.iter().position(|r| r == "name").unwrap();
        let (mut asks, mut does) = (0, 0);
        for _ in 0..300 {
            let e = g.for_playbook(&spec);
            assert_eq!(e.intent, me, "{}", e.text);
            match e.polarity {
                ASKS => asks += 1,
                DO => does += 1,
                p => panic!("{:?}: polarity {p}", e.text),
            }
            assert!(e.slots.iter().any(|s| s.2 == name), "{}", e.text);
        }
        // 40 % are followed by a request to mend it.
        assert!(
            (60..=180).contains(&does),
            "{does} requests, {asks} reports alone"
        );
    }

    /// A change told as made, inside a request to undo it or to keep it,
    /// is learned as *none of them* with no value of the change tagged;
    /// requests to undo and requests to keep both come up (counted by
    /// their wrappers' words, not form by form). A done clause naming a
    /// value the playbook's opposite does not take is refused.
    #[test]
    fn a_request_to_undo_a_change_is_learned_as_none_of_them() {
        let (specs, lex) = setup();
        let spec = specs.iter().find(|s| s.id == "net.revoke").unwrap();
        let mut g = Generator::new(&specs, &lex, 5);
        let opp = g.undone_by(spec).unwrap();
        assert_eq!(opp.id, "net.allow");
        let none = g.labels.none();
        let a = &lex.augment;
        // A wrapper's words around the clause (chatter may come around it).
        let wrapped = |text: &str, wrappers: &[String]| {
            wrappers.iter().any(|w| {
                let w = w.to_lowercase();
                let (pre, post) = w.split_once("{}").unwrap();
                text.contains(pre.trim()) && text.contains(post.trim())
            })
        };
        let (mut undo, mut keep) = (0, 0);
        for _ in 0..200 {
            let e = g.undo_example(spec, opp);
            assert_eq!((e.intent, e.polarity), (none, DO), "{}", e.text);
            // No value of the change (a digit in chatter is context).
            let context = g.labels.context();
            assert!(
                e.slots.iter().all(|s| Some(s.2) == context),
                "{}: {:?}",
                e.text,
                e.slots
            );
            let t = e.text.to_lowercase();
            if [&a.undo, &a.undo_nouns, &a.undo_asked]
                .iter()
                .any(|w| wrapped(&t, w))
            {
                undo += 1;
            }
            if [&a.undo_refused, &a.undo_nouns_refused]
                .iter()
                .any(|w| wrapped(&t, w))
            {
                keep += 1;
            }
        }
        assert!(undo > 120 && keep > 5, "{undo} undo, {keep} keep");
        let mut bad = specs.clone();
        let allow = bad.iter_mut().find(|s| s.id == "net.allow").unwrap();
        allow
            .language
            .done
            .push("you opened port {port} from {from} to {to}".into());
        let err = check_catalog(&bad).unwrap_err();
        assert!(
            err.contains("{port}") && err.contains("net.revoke"),
            "{err}"
        );
    }

    /// A request to stop a change that goes on is learned as the
    /// opposite, with both values tagged in their roles; a request to go on
    /// with it as none of them, no value tagged. An ongoing phrase naming a
    /// value the opposite does not take is refused.
    #[test]
    fn a_request_to_stop_a_change_asks_for_its_opposite() {
        let (specs, lex) = setup();
        let spec = specs.iter().find(|s| s.id == "net.allow").unwrap();
        let mut g = Generator::new(&specs, &lex, 9);
        let ongoing = g.ceased_by(spec).unwrap();
        let revoke = specs.iter().find(|s| s.id == "net.revoke").unwrap();
        assert_eq!(ongoing, revoke.language.ongoing.as_slice());
        let allow = g.intent_of("net.allow");
        let none = g.labels.none();
        let role = |n: &str| g.labels.roles.iter().position(|r| r == n).unwrap();
        let (from, to) = (role("from"), role("to"));
        let (mut stop, mut keep) = (0, 0);
        for _ in 0..200 {
            let e = g.cease_example(spec, ongoing);
            assert_eq!(e.polarity, DO, "{}", e.text);
            let roles: Vec<usize> = e.slots.iter().map(|s| s.2).collect();
            if e.intent == allow {
                stop += 1;
                assert!(
                    roles.contains(&from) && roles.contains(&to),
                    "{}: {:?}",
                    e.text,
                    e.slots
                );
            } else {
                assert_eq!(e.intent, none, "{}", e.text);
                assert!(!roles.contains(&from) && !roles.contains(&to), "{}", e.text);
                keep += 1;
            }
        }
        assert!(stop > 120 && keep > 15, "{stop} stop, {keep} keep");
        let mut bad = specs.clone();
        let revoke = bad.iter_mut().find(|s| s.id == "net.revoke").unwrap();
        revoke
            .language
            .ongoing
            .push("closing port {port} from {from} to {to}".into());
        let err = check_catalog(&bad).unwrap_err();
        assert!(err.contains("{port}") && err.contains("net.allow"), "{err}");
    }

    /// A duration with no number of days fills a duration's slot in
    /// examples of its own stream, added after the others (which stay as
    /// they were without them), tagged as the slot's span: never anywhere
    /// else.
    #[test]
    fn a_duration_with_no_number_is_tagged_in_examples_of_its_own() {
        let (specs, lex) = setup();
        let mut g = Generator::new(&specs, &lex, 3);
        let days = g.labels.roles.iter().position(|r| r == "days").unwrap();
        let issue = g.intent_of("pki.issue_certificate");
        let all = g.generate(120, 50);
        let mut plain = lex.clone();
        plain.pools.open_durations.clear();
        let without = Generator::new(&specs, &plain, 3).generate(120, 50);
        assert_eq!(all[..without.len()], without[..]);
        let open = |e: &Example| {
            e.slots.iter().filter(|s| s.2 == days).any(|s| {
                lex.pools
                    .open_durations
                    .contains(&e.text[s.0..s.1].to_string())
            })
        };
        assert!(!without.iter().any(open));
        let added = &all[without.len()..];
        assert_eq!(
            added.len(),
            120 / OPEN_SHARE,
            "one per {OPEN_SHARE} examples"
        );
        for e in added {
            assert!(open(e), "{}: {:?}", e.text, e.slots);
            assert_eq!(e.intent, issue, "{}", e.text);
        }
    }

    /// A playbook with a pair of parameters of one type gets more examples
    /// (its roles show only in word order); one without gets the base count.
    #[test]
    fn pairs_of_one_type_get_more_examples() {
        let (specs, _) = setup();
        let count = |id: &str| examples_for(specs.iter().find(|s| s.id == id).unwrap(), 10);
        assert_eq!(count("net.allow"), 30);
        assert_eq!(count("net.revoke"), 30);
        assert_eq!(count("dns.add_alias"), 30);
        assert_eq!(count("dns.add_record"), 10);
        assert_eq!(count("net.delete_domain"), 10);
    }

    /// A doubled slot holds two different values in the wrapper and no
    /// span (the example is "none of them").
    #[test]
    fn a_doubled_slot_holds_two_values() {
        let (specs, lex) = setup();
        let spec = specs.iter().find(|s| s.id == "net.allow").unwrap();
        let mut g = Generator::new(&specs, &lex, 7);
        for _ in 0..50 {
            let f = g.fill_doubled(
                spec,
                "open {from} to {to}",
                false,
                Some(("from", "[{}|{}]")),
            );
            let inner = f.text.split('[').nth(1).unwrap().split(']').next().unwrap();
            let (a, b) = inner.split_once('|').unwrap();
            assert!(!a.is_empty() && !b.is_empty() && a != b, "{}", f.text);
            assert!(f.slots.is_empty());
        }
    }

    /// A noun written after a domain's name stays outside its span, and
    /// every span is exactly a value (no noun glued to it).
    #[test]
    fn domain_nouns_stay_outside_the_spans() {
        let (specs, lex) = setup();
        assert!(!lex.pools.domain_nouns.is_empty());
        let mut g = Generator::new(&specs, &lex, 11);
        // A purpose ("the medical devices") is context, not a domain.
        let context = g.labels().context();
        let data = g.generate(300, 0);
        let mut after = 0;
        for e in &data {
            for &(a, b, _) in e.slots.iter().filter(|s| Some(s.2) != context) {
                let span = e.text[a..b].to_lowercase();
                let last = span.rsplit(' ').next().unwrap_or("");
                assert!(
                    !lex.pools.domain_nouns.iter().any(|n| n == last) || span == *last,
                    "{:?}: span {span:?}",
                    e.text
                );
                let next = e.text[b..].trim_start().split(' ').next().unwrap_or("");
                if lex
                    .pools
                    .domain_nouns
                    .iter()
                    .any(|n| n.eq_ignore_ascii_case(next))
                {
                    after += 1;
                }
            }
        }
        assert!(after > 50, "only {after} spans followed by a domain noun");
    }

    /// A context slot ("from {old_address} to {address}") is tagged with
    /// the context role, never as a parameter; a digit in chatter put
    /// around a request ("we have 3 TVs") is context too.
    #[test]
    fn context_slots_and_chatter_numbers_take_the_context_role() {
        let (specs, lex) = setup();
        let spec = specs.iter().find(|s| s.id == "dns.update_record").unwrap();
        let mut g = Generator::new(&specs, &lex, 5);
        let ctx = g.labels.context().unwrap();
        let address = g.labels.roles.iter().position(|r| r == "address").unwrap();
        for _ in 0..20 {
            let f = g.fill(spec, "move {name} from {old_address} to {address}", true);
            let roles: Vec<usize> = f.slots.iter().map(|s| s.2).collect();
            assert_eq!(roles.len(), 3, "{}", f.text);
            assert_eq!(roles[1], ctx, "{}", f.text);
            assert_eq!(roles[2], address, "{}", f.text);
            let (a, b, _) = f.slots[1];
            let old = &f.text[a..b];
            assert!(hearth_common::types::Address::parse(old).is_ok(), "{old:?}");
            // Untagged, no slot at all.
            assert!(g
                .fill(spec, "move {name} from {old_address} to {address}", false)
                .slots
                .is_empty());
        }
        let data = g.generate(400, 0);
        let numbers: Vec<&str> = data
            .iter()
            .flat_map(|e| {
                e.slots
                    .iter()
                    .filter(|s| s.2 == ctx)
                    .map(|&(a, b, _)| &e.text[a..b])
            })
            .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
            .collect();
        assert!(numbers.len() > 5, "chatter numbers tagged: {numbers:?}");
        for e in &data {
            for &(a, b, r) in &e.slots {
                assert!(a < b && b <= e.text.len(), "{:?}", e.text);
                if r == ctx {
                    assert!(
                        e.text[a..b].chars().any(char::is_alphanumeric),
                        "{:?}",
                        e.text
                    );
                }
            }
        }
    }
}
