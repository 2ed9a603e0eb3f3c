//! Candidate spans of a request: the only strings a parameter value may be.
//!
//! The request is cut into words; each word (with surrounding punctuation
//! removed) is classified as an address, a network, a DNS name, a number or
//! a plain word. A parameter's value is always one of these spans copied from
//! the request (or an enum value), so nothing the owner did not write can
//! appear in a plan. Role cues (`from`, `to`, `as`, `port`, `days`) around
//! each word give a prior for which parameter a span fills; the model breaks
//! what the cues leave open.

use std::net::{Ipv4Addr, Ipv6Addr};

/// What a span looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpanKind {
    /// A valid IPv4 address.
    Ipv4,
    /// A valid IPv6 address.
    Ipv6,
    /// Something shaped like an address that does not parse (300.1.2.3).
    BadAddress,
    /// Text with a slash shaped like an IPv4 network (valid or not).
    Cidr,
    /// A name with at least one dot, not an address.
    DnsName,
    /// A whole number.
    Number(u64),
    /// A word of letters, digits and hyphens starting with a letter.
    Word,
    /// Anything else.
    Other,
}

/// One word of the request.
#[derive(Debug, Clone)]
pub struct Span {
    /// The text as written (punctuation around it removed).
    pub text: String,
    /// Lower-case text.
    pub lower: String,
    /// Index among the request's words.
    pub index: usize,
    /// Its shape.
    pub kind: SpanKind,
}

const OPEN: &[char] = &['"', '\'', '(', '[', '{', '<', '`', '«', '“', '‘'];
const CLOSE: &[char] = &[
    '"', '\'', ')', ']', '}', '>', ',', ';', ':', '!', '?', '`', '»', '”', '’', '.',
];

fn classify(w: &str) -> SpanKind {
    if w.parse::<Ipv4Addr>().is_ok() {
        return SpanKind::Ipv4;
    }
    if w.contains(':') && w.parse::<Ipv6Addr>().is_ok() {
        return SpanKind::Ipv6;
    }
    if w.contains('/') {
        let (a, b) = w.split_once('/').unwrap_or((w, ""));
        if a.chars().all(|c| c.is_ascii_digit() || c == '.')
            && a.contains('.')
            && !b.is_empty()
            && b.chars().all(|c| c.is_ascii_digit())
        {
            return SpanKind::Cidr;
        }
        return SpanKind::Other;
    }
    if let Ok(n) = w.parse::<u64>() {
        return SpanKind::Number(n);
    }
    let dotted_digits =
        w.contains('.') && w.chars().all(|c| c.is_ascii_digit() || c == '.') && w.len() > 2;
    let hexish = w.matches(':').count() >= 2
        && w.chars()
            .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
    if dotted_digits || hexish {
        return SpanKind::BadAddress;
    }
    if w.contains('.')
        && w.chars().any(|c| c.is_ascii_alphabetic())
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
        && !w.starts_with('.')
    {
        return SpanKind::DnsName;
    }
    let mut cs = w.chars();
    if cs.next().is_some_and(|c| c.is_ascii_alphabetic())
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return SpanKind::Word;
    }
    SpanKind::Other
}

/// Cuts a request into classified words. `443/udp` and `udp/443` become two
/// words; a possessive `'s` is dropped from a plain word.
pub fn spans(text: &str) -> Vec<Span> {
    let mut out = Vec::new();
    for raw in text.split_whitespace() {
        let w = raw.trim_start_matches(OPEN).trim_end_matches(CLOSE);
        if w.is_empty() {
            continue;
        }
        let mut parts: Vec<&str> = vec![w];
        if let Some((a, b)) = w.split_once('/') {
            let proto = |s: &str| matches!(s.to_ascii_lowercase().as_str(), "tcp" | "udp");
            if (proto(a) && b.parse::<u64>().is_ok()) || (proto(b) && a.parse::<u64>().is_ok()) {
                parts = vec![a, b];
            }
        }
        if let Some((a, b)) = w.split_once('=') {
            parts = vec![a, b];
        }
        for p in parts {
            let p = p.strip_suffix("'s").unwrap_or(p);
            let p = p.trim_start_matches(OPEN).trim_end_matches(CLOSE);
            // An IPv6 address may be written in brackets, with a zone or not.
            let p = p.trim_start_matches('[').trim_end_matches(']');
            if p.is_empty() {
                continue;
            }
            let kind = classify(p);
            out.push(Span {
                text: p.to_string(),
                lower: p.to_ascii_lowercase(),
                index: out.len(),
                kind,
            });
        }
    }
    out
}

/// Words that name actions, parts of the appliance or grammar, never a new
/// domain's name.
pub const STOPWORDS: &[&str] = &[
    "a",
    "an",
    "the",
    "new",
    "network",
    "networks",
    "domain",
    "domains",
    "segment",
    "zone",
    "vlan",
    "subnet",
    "called",
    "named",
    "name",
    "create",
    "make",
    "add",
    "set",
    "up",
    "setup",
    "for",
    "with",
    "and",
    "of",
    "to",
    "please",
    "isolated",
    "separate",
    "another",
    "bridge",
    "my",
    "our",
    "me",
    "us",
    "i",
    "we",
    "want",
    "need",
    "would",
    "like",
    "could",
    "you",
    "can",
    "some",
    "it",
    "its",
    "on",
    "in",
    "as",
    "is",
    "be",
    "that",
    "this",
    "one",
    "own",
    "from",
    "build",
    "start",
    "spin",
    "open",
    "devices",
    "device",
    "net",
    "home",
    "range",
    "private",
    "dedicated",
    "fresh",
    "id",
    "identifier",
    "call",
    "using",
    "use",
    "let",
    "s",
    "should",
    "get",
    "give",
    "there",
    "here",
    "by",
    "at",
    "all",
    "just",
    "only",
];

/// The word `n` places before span `i` (n = 1: the word just before).
pub fn before(sp: &[Span], i: usize, n: usize) -> Option<&str> {
    i.checked_sub(n).map(|j| sp[j].lower.as_str())
}

/// The word `n` places after span `i`.
pub fn after(sp: &[Span], i: usize, n: usize) -> Option<&str> {
    sp.get(i + n).map(|s| s.lower.as_str())
}

fn is_in(w: Option<&str>, set: &[&str]) -> bool {
    w.is_some_and(|w| set.contains(&w))
}

/// Words right before a domain that make it the one reached.
const DOMAIN_DESTINATION_CUES: &[&str] = &[
    "to",
    "into",
    "reach",
    "reaching",
    "access",
    "accessing",
    "towards",
    "toward",
    "reaches",
    "contact",
    "destination",
    "dst",
    "onto",
    "->",
    "=>",
];

/// Role prior for a pair of same-typed parameters (`from`/`to`,
/// `name`/`target`): positive means the span at `i` looks like the first
/// role (source, alias name), negative like the second (destination, target).
pub fn pair_prior(sp: &[Span], i: usize, mentions: &[usize], kind: PairKind) -> f32 {
    let mention = |j: usize| mentions.contains(&j);
    let mut s = 0.0f32;
    // Nearest cue word within three words before the span.
    for n in 1..=3 {
        let Some(w) = before(sp, i, n) else { break };
        if n > 1 && mention(i - n) {
            break;
        }
        let first = match kind {
            PairKind::Domains => ["from", "source", "src"].as_slice(),
            PairKind::Names => {
                ["as", "called", "named", "alias", "cname", "from", "name"].as_slice()
            }
        };
        let second = match kind {
            PairKind::Domains => DOMAIN_DESTINATION_CUES,
            PairKind::Names => [
                "to",
                "for",
                "at",
                "of",
                "towards",
                "toward",
                "onto",
                "target",
                "->",
                "=>",
                "pointing",
                "resolve",
                "resolves",
                "resolving",
                "points",
            ]
            .as_slice(),
        };
        // "the same host as media.home.arpa": what is copied is the target.
        if kind == PairKind::Names
            && w == "as"
            && (1..=3).any(|k| before(sp, i, n + k) == Some("same"))
        {
            s -= 2.0;
            break;
        }
        if first.contains(&w) {
            // "isolate guest from lan", "block iot from lan": the word
            // before "from" is itself a mention, the source.
            // Unless that mention was itself marked the destination ("allow
            // access to lan from guest").
            if kind == PairKind::Domains
                && w == "from"
                && n == 1
                && i >= 2
                && mention(i - 2)
                && !is_in(before(sp, i - 2, 1), DOMAIN_DESTINATION_CUES)
            {
                s -= 2.0;
            } else {
                s += 2.0;
            }
            break;
        }
        if second.contains(&w) {
            s -= 2.0;
            break;
        }
    }
    if kind == PairKind::Domains {
        // "lan should accept connections from guest": the one that accepts
        // is reached.
        for n in 1..=3 {
            let Some(w) = after(sp, i, n) else { break };
            if mention(i + n) {
                break;
            }
            if matches!(
                w,
                "accept" | "accepts" | "receive" | "receives" | "be" | "allow" | "allows"
            ) && n <= 3
            {
                if w == "be" && !is_in(after(sp, i, n + 1), &["reachable", "reached", "accessible"])
                {
                    continue;
                }
                s -= 2.5;
                break;
            }
            if matches!(
                w,
                "to" | "reach"
                    | "talk"
                    | "access"
                    | "connect"
                    | "reaching"
                    | "reaches"
                    | "talks"
                    | "connects"
                    | "accesses"
                    | "contact"
            ) {
                s += 1.0;
                break;
            }
        }
        // "X from Y": X is the source when the word before "from" is X.
        if is_in(after(sp, i, 1), &["from"]) && mention(i + 2) {
            s += 2.0;
        }
    }
    if kind == PairKind::Names {
        if is_in(after(sp, i, 1), &["->", "=>"]) {
            s += 2.0;
        }
        // "music.home.arpa should point to ...": what points is the alias.
        if (1..=2).any(|n| {
            is_in(
                after(sp, i, n),
                &[
                    "point",
                    "points",
                    "pointing",
                    "resolve",
                    "resolves",
                    "redirect",
                    "redirects",
                ],
            )
        }) {
            s += 1.5;
        }
        // "nas.home.arpa should also answer as files.home.arpa"
        if is_in(after(sp, i, 1), &["is", "as"]) && is_in(after(sp, i, 2), &["an", "a", "alias"]) {
            s += 2.0;
        }
    }
    s
}

/// Which pair of roles [`pair_prior`] scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairKind {
    /// `from` and `to` domains.
    Domains,
    /// Alias `name` and its `target`.
    Names,
}

/// Prior that a number is a port (`port 443`, `443/tcp`) rather than a count.
pub fn port_prior(sp: &[Span], i: usize) -> f32 {
    if is_in(after(sp, i, 1), &["day", "days"]) {
        return -5.0;
    }
    if is_in(before(sp, i, 1), &["port", "ports", "tcp", "udp"])
        || is_in(after(sp, i, 1), &["tcp", "udp"])
    {
        return 2.0;
    }
    0.0
}

/// Prior that a number is a count of days.
pub fn days_prior(sp: &[Span], i: usize) -> f32 {
    if is_in(after(sp, i, 1), &["day", "days", "d"]) || is_in(before(sp, i, 1), &["days"]) {
        return 2.0;
    }
    if is_in(before(sp, i, 1), &["port", "ports"]) {
        return -5.0;
    }
    -1.0
}

/// Prior that a word is a new domain's name.
pub fn new_domain_prior(sp: &[Span], i: usize) -> f32 {
    let mut s = 0.0;
    if is_in(before(sp, i, 1), &["called", "named", "name", "call", "id"])
        // "call it cams", "name it lab"
        || (is_in(before(sp, i, 1), &["it", "this", "that"])
            && is_in(before(sp, i, 2), &["call", "name"]))
    {
        s += 3.0;
    }
    if is_in(
        before(sp, i, 1),
        &["domain", "network", "segment", "zone", "vlan", "net"],
    ) {
        s += 1.5;
    }
    if is_in(
        after(sp, i, 1),
        &[
            "domain", "network", "segment", "zone", "vlan", "net", "bridge",
        ],
    ) {
        s += 1.0;
    }
    // "a network for kids", "a separate segment for the cameras"
    let for_at = (1..=2).find(|&n| before(sp, i, n) == Some("for"));
    if let Some(n) = for_at {
        if (n == 1 || is_in(before(sp, i, 1), &["the", "my", "our"]))
            && (1..=3).any(|k| is_in(before(sp, i, n + k), DOMAIN_WORDS))
        {
            s += 0.5;
        }
    }
    s
}

/// Words that name a network domain.
const DOMAIN_WORDS: &[&str] = &[
    "domain", "network", "segment", "zone", "vlan", "net", "bridge",
];

/// A word that plainly asks for a unit other than days for a certificate's
/// validity (`a year`, `6 months`): the value cannot be copied from the
/// request, so the request is refused rather than guessed.
pub fn has_other_duration(sp: &[Span]) -> bool {
    sp.iter().any(|s| {
        matches!(
            s.lower.as_str(),
            "week" | "weeks" | "month" | "months" | "year" | "years" | "hour" | "hours" | "forever"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(t: &str) -> Vec<(String, SpanKind)> {
        spans(t).into_iter().map(|s| (s.text, s.kind)).collect()
    }

    #[test]
    fn addresses_names_and_numbers_are_classified() {
        let k = kinds(
            "Point NAS.home.arpa. at 192.168.1.20, port 443/udp [fd00::1] 10.0.0.0/24 300.1.2.3",
        );
        assert_eq!(k[1], ("NAS.home.arpa".into(), SpanKind::DnsName));
        assert_eq!(k[3], ("192.168.1.20".into(), SpanKind::Ipv4));
        assert_eq!(k[5], ("443".into(), SpanKind::Number(443)));
        assert_eq!(k[6], ("udp".into(), SpanKind::Word));
        assert_eq!(k[7], ("fd00::1".into(), SpanKind::Ipv6));
        assert_eq!(k[8], ("10.0.0.0/24".into(), SpanKind::Cidr));
        assert_eq!(k[9], ("300.1.2.3".into(), SpanKind::BadAddress));
    }

    #[test]
    fn direction_cues_pick_source_and_destination() {
        let sp = spans("lan should accept connections from guest on 8080");
        let m = [0, 5];
        assert!(pair_prior(&sp, 0, &m, PairKind::Domains) < 0.0);
        assert!(pair_prior(&sp, 5, &m, PairKind::Domains) > 0.0);
        let sp = spans("isolate guest from lan");
        let m = [1, 3];
        assert!(
            pair_prior(&sp, 1, &m, PairKind::Domains) > pair_prior(&sp, 3, &m, PairKind::Domains)
        );
    }
}
