//! The interpreter's generic language resources, read from one data file
//! beside the catalog (`catalog/language/en.toml`): number words, duration
//! units, the wrappers that augment the catalog's templates (negation,
//! politeness, chatter, questions, several actions, instructions aimed at the
//! model), requests no playbook serves, and the pools of names that fill
//! the templates' slots. No English lives in the Rust code: every word the
//! interpreter knows comes from this file or from the playbooks.
//!
//! At run time only [`Lexicon::parse_number`] and [`Lexicon::parse_days`]
//! are used (a duration span such as "two weeks" → 14); the rest feeds the
//! training-data generator.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Lexicon {
    /// Number words and how they combine.
    pub numbers: Numbers,
    /// Duration units in days (`week = 7`), including short forms (`w`).
    pub days: BTreeMap<String, u64>,
    /// Template wrappers and out-of-scope requests for the generator.
    pub augment: Augment,
    /// Surface forms that fill slots when training examples are made.
    pub pools: Pools,
}

/// Number words.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Numbers {
    /// Words with a value of their own (`one = 1`, `twenty = 20`, `a = 1`).
    pub words: BTreeMap<String, u64>,
    /// Words that multiply what came before (`hundred = 100`).
    pub multipliers: BTreeMap<String, u64>,
    /// Words that may stand between number words and mean nothing
    /// (`and` in "a hundred and twenty").
    #[serde(default)]
    pub fillers: Vec<String>,
}

/// Wrappers (each holds one `{}` where the request goes, or two for
/// `several`) and request templates outside the catalog.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Augment {
    /// Ways to ask politely; the request is still to be done.
    pub polite: Vec<String>,
    /// Ways to say NOT to do it: the request must never be carried out.
    pub negations: Vec<String>,
    /// Negative words whose scope is not the action ("don't forget to {}"):
    /// still a request to do it.
    pub not_negations: Vec<String>,
    /// Questions about doing it (should I, how do I): never a change.
    pub hypotheticals: Vec<String>,
    /// Appended to a playbook's state question to ask for the change
    /// when the answer is no ("if not, fix it").
    pub fix_suffixes: Vec<String>,
    /// Appended to a playbook's report of a problem to ask for the change
    /// that mends it (", please sort that out"): `{}` is the report.
    #[serde(default)]
    pub report_requests: Vec<String>,
    /// Context before the request.
    pub chatter_before: Vec<String>,
    /// Context after the request.
    pub chatter_after: Vec<String>,
    /// Two requests in one (`{}` twice): refused, one at a time.
    pub several: Vec<String>,
    /// Instructions aimed at the model around a request: refused.
    pub injections: Vec<String>,
    /// Two values where a playbook takes one (`{}` twice: "both {} and
    /// {}"): a request for two actions, refused, one at a time.
    #[serde(default)]
    pub several_values: Vec<String>,
    /// A request beside a clause that sets another action aside ("don't
    /// {other}, just {}"): `{}` is the request, still to be done; `{other}`
    /// is another playbook's request or one of `set_aside_others`, never
    /// planned.
    #[serde(default)]
    pub set_aside: Vec<String>,
    /// Actions a request may set aside beside itself, in the form that
    /// follows "don't" (no playbook does them).
    #[serde(default)]
    pub set_aside_others: Vec<String>,
    /// Requests to undo a change that was made: `{}` is one of a playbook's
    /// `done` clauses ("{} by mistake, please undo it"). Learned as *none
    /// of them*, like every form below: a request to undo is refused, never
    /// planned as the change it names.
    #[serde(default)]
    pub undo: Vec<String>,
    /// Requests to undo a change asked for earlier: `{}` is one of the
    /// playbook's own requests ("yesterday I told you to {}; reverse it").
    #[serde(default)]
    pub undo_asked: Vec<String>,
    /// Requests to undo a change named as a thing: `{}` is one of a
    /// playbook's `done_nouns` ("reverse {}").
    #[serde(default)]
    pub undo_nouns: Vec<String>,
    /// A named change to be kept: `{}` is a `done_nouns` entry ("don't
    /// undo {}").
    #[serde(default)]
    pub undo_nouns_refused: Vec<String>,
    /// A change that was made, to be kept: `{}` is a `done` clause ("{} on
    /// purpose, leave it").
    #[serde(default)]
    pub undo_refused: Vec<String>,
    /// Requests to stop a change that goes on: `{}` is one of a playbook's
    /// `ongoing` phrases ("quit {}"). Learned as a request for the
    /// playbook's opposite, with the values tagged for it.
    #[serde(default)]
    pub cease: Vec<String>,
    /// Requests to go on with it: `{}` is an `ongoing` phrase ("keep {}").
    /// Learned as *none of them*: nothing is to change.
    #[serde(default)]
    pub cease_refused: Vec<String>,
    /// Requests no playbook serves; slots `{domain}`, `{host}`, `{number}`
    /// are filled from the pools. They teach the "none of them" answer.
    pub out_of_scope: Vec<String>,
}

/// Slot fillers.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Pools {
    /// Domain names as people write them; the id is the text without
    /// spaces ("living room" → livingroom).
    pub domains: Vec<String>,
    /// Host labels.
    pub hosts: Vec<String>,
    /// DNS zones.
    pub zones: Vec<String>,
    /// Protocol names as written.
    pub protocols: Vec<String>,
    /// Syllables of made-up names (domains and hosts the pools do not
    /// hold, so that no name is learned as a word of the request).
    pub syllables: Vec<String>,
    /// What people set a network up for ("the cameras", "my work
    /// laptop"): the `{purpose}` slot, context that is never the name.
    pub purposes: Vec<String>,
    /// Neutral words that stand in for the existing domains a request
    /// names, in training and at run time alike: the model reads where a
    /// domain stands in the sentence, never which name the owner chose
    /// ("lan" is not more often the destination than "kids").
    pub placeholders: Vec<String>,
    /// Words written next to a domain's name without being part of it
    /// ("the garage zone"): training sometimes puts one after an existing
    /// domain, outside its span, so that the noun moves no role.
    #[serde(default)]
    pub domain_nouns: Vec<String>,
    /// Words that refer back to a value the request already named ("add
    /// nas.lan at … and give it a certificate"): training writes one in
    /// place of a value of the second of two requests in one, so that an
    /// action on "it" still counts as another action.
    #[serde(default)]
    pub pronouns: Vec<String>,
    /// Ways to give a duration with no number of days in them ("forever",
    /// "until revoked"): training now and then writes one in a duration's
    /// slot, tagged as its span, so that a validity the lexicon cannot read
    /// is refused as such (its span does not parse) instead of leaving the
    /// parameter to its default.
    #[serde(default)]
    pub open_durations: Vec<String>,
}

impl Lexicon {
    /// Reads and checks the file.
    pub fn load(path: &Path) -> Result<Lexicon> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Parses the file's text and checks its wrappers.
    pub fn parse(text: &str) -> Result<Lexicon> {
        let lex: Lexicon = toml::from_str(text)?;
        let a = &lex.augment;
        for (what, list, holes) in [
            ("polite", &a.polite, 1),
            ("negations", &a.negations, 1),
            ("not_negations", &a.not_negations, 1),
            ("hypotheticals", &a.hypotheticals, 1),
            ("injections", &a.injections, 1),
            ("several", &a.several, 2),
            ("several_values", &a.several_values, 2),
            ("set_aside", &a.set_aside, 1),
            ("report_requests", &a.report_requests, 1),
        ] {
            for w in list {
                anyhow::ensure!(
                    w.matches("{}").count() == holes,
                    "augment.{what}: {w:?} must hold {{}} exactly {holes} time(s)"
                );
            }
        }
        for w in &a.set_aside {
            anyhow::ensure!(
                w.matches("{other}").count() == 1,
                "augment.set_aside: {w:?} must hold {{other}} exactly once"
            );
        }
        anyhow::ensure!(!lex.pools.domains.is_empty(), "pools.domains is empty");
        anyhow::ensure!(!lex.pools.hosts.is_empty(), "pools.hosts is empty");
        anyhow::ensure!(!lex.pools.zones.is_empty(), "pools.zones is empty");
        anyhow::ensure!(!lex.pools.protocols.is_empty(), "pools.protocols is empty");
        anyhow::ensure!(!lex.pools.syllables.is_empty(), "pools.syllables is empty");
        anyhow::ensure!(!lex.pools.purposes.is_empty(), "pools.purposes is empty");
        let ph = &lex.pools.placeholders;
        anyhow::ensure!(ph.len() >= 2, "pools.placeholders needs at least two words");
        for w in ph {
            anyhow::ensure!(
                !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase()),
                "pools.placeholders: {w:?} must be one lower-case word"
            );
            anyhow::ensure!(
                !lex.pools.domains.contains(w) && !lex.pools.hosts.contains(w),
                "pools.placeholders: {w:?} is also a name of the pools"
            );
            anyhow::ensure!(
                ph.iter().filter(|x| *x == w).count() == 1,
                "pools.placeholders: {w:?} is listed twice"
            );
        }
        Ok(lex)
    }

    /// Checks that `text` (the signed language file, as the catalog loaded
    /// it) says what this lexicon says: the interpreter's heads were trained
    /// with this lexicon (copied into `meta.json`), so another file would
    /// read requests differently from what was trained. Compared as parsed
    /// (comments and layout do not count); the error names the sections
    /// that differ.
    pub fn check_same(&self, text: &str) -> Result<()> {
        let other = Self::parse(text).context("the signed language file does not parse")?;
        let differ: Vec<&str> = [
            ("numbers", self.numbers == other.numbers),
            ("days", self.days == other.days),
            ("augment", self.augment == other.augment),
            ("pools", self.pools == other.pools),
        ]
        .into_iter()
        .filter(|(_, same)| !same)
        .map(|(name, _)| name)
        .collect();
        anyhow::ensure!(
            differ.is_empty(),
            "it differs from the lexicon the interpreter was trained with (meta.json) in [{}]",
            differ.join("], [")
        );
        Ok(())
    }

    /// The words of a span: runs of letters and runs of digits, lower-case
    /// ("30d" → 30, d; "a hundred-and-twenty" → a, hundred, and, twenty).
    /// The lower-case words and digit runs of a text.
    pub fn words(text: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut cur = String::new();
        let mut digit = false;
        for c in text.chars() {
            let is_d = c.is_ascii_digit();
            if c.is_alphanumeric() {
                if !cur.is_empty() && is_d != digit {
                    out.push(std::mem::take(&mut cur));
                }
                digit = is_d;
                cur.extend(c.to_lowercase());
            } else if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        out
    }

    /// Reads a number from its words or digits ("thirty", "a hundred and
    /// twenty", "45"). None when anything in it is not a number word.
    pub fn parse_number(&self, text: &str) -> Option<u64> {
        self.number_of(&Self::words(text))
    }

    fn number_of(&self, words: &[String]) -> Option<u64> {
        let n = &self.numbers;
        let mut total: u64 = 0;
        let mut current: Option<u64> = None;
        let mut digits_seen = false;
        for w in words {
            if n.fillers.iter().any(|f| f == w) {
                continue;
            }
            if let Ok(d) = w.parse::<u64>() {
                if current.is_some() || digits_seen {
                    return None;
                }
                current = Some(d);
                digits_seen = true;
            } else if let Some(&v) = n.words.get(w) {
                // "twenty three" and "hundred and five" combine; "two
                // three" does not.
                if let Some(c) = current {
                    let after_hundreds = c % 100 == 0 && v < 100;
                    let after_tens = c % 10 == 0 && c % 100 != 0 && v < 10;
                    if !(after_hundreds || after_tens) {
                        return None;
                    }
                }
                current = Some(current.unwrap_or(0).checked_add(v)?);
            } else if let Some(&m) = n.multipliers.get(w) {
                let c = current.unwrap_or(1).checked_mul(m)?;
                if m >= 1000 {
                    total = total.checked_add(c)?;
                    current = None;
                } else {
                    current = Some(c);
                }
            } else {
                return None;
            }
        }
        match (total, current) {
            (0, None) => None,
            (t, c) => t.checked_add(c.unwrap_or(0)),
        }
    }

    /// Reads a duration in days: a number followed by a unit ("2 weeks",
    /// "a fortnight", "30d", "1y"), or a number alone (days). None when the
    /// span holds anything else.
    ///
    /// Several amounts, each with its unit and from the largest unit
    /// down, add up ("a year and a month" → 395); a bare number may only
    /// stand alone.
    pub fn parse_days(&self, text: &str) -> Option<u64> {
        let words = Self::words(text);
        let mut total: u64 = 0;
        let mut amounts = 0;
        let mut last_unit = u64::MAX;
        let mut number: Vec<String> = Vec::new();
        for w in words {
            match self.days.get(&w) {
                Some(&unit) => {
                    // Amounts add up from the largest unit down ("a year
                    // and a month"); "30 days and 60 days" is two.
                    if unit >= last_unit {
                        return None;
                    }
                    last_unit = unit;
                    let n = if number.is_empty() {
                        1
                    } else {
                        self.number_of(&number)?
                    };
                    total = total.checked_add(n.checked_mul(unit)?)?;
                    amounts += 1;
                    number.clear();
                }
                None => number.push(w),
            }
        }
        match (amounts, number.is_empty()) {
            (0, true) => None,
            (0, false) => self.number_of(&number),
            (_, true) => Some(total),
            // Only a filler may follow the last unit ("a week and").
            (_, false) => number
                .iter()
                .all(|w| self.numbers.fillers.contains(w))
                .then_some(total),
        }
    }

    /// A number written in words, for the generator ("thirty-five").
    pub fn number_in_words(&self, n: u64) -> Option<String> {
        let inv: BTreeMap<u64, &str> = self
            .numbers
            .words
            .iter()
            .filter(|(w, _)| w.len() > 2)
            .map(|(w, &v)| (v, w.as_str()))
            .collect();
        let hundred = self
            .numbers
            .multipliers
            .iter()
            .find(|(_, &v)| v == 100)
            .map(|(w, _)| w.as_str());
        let filler = self.numbers.fillers.first().map(String::as_str);
        let below_100 = |n: u64| -> Option<String> {
            if let Some(w) = inv.get(&n) {
                return Some((*w).to_string());
            }
            let tens = inv.get(&(n / 10 * 10))?;
            let ones = inv.get(&(n % 10))?;
            Some(format!("{tens}-{ones}"))
        };
        match n {
            0 => inv.get(&0).map(|s| s.to_string()),
            1..=99 => below_100(n),
            100..=999 => {
                let h = format!("{} {}", inv.get(&(n / 100))?, hundred?);
                match n % 100 {
                    0 => Some(h),
                    r => Some(match filler {
                        Some(f) => format!("{h} {f} {}", below_100(r)?),
                        None => format!("{h} {}", below_100(r)?),
                    }),
                }
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex() -> Lexicon {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../catalog/language/en.toml");
        Lexicon::load(&path).unwrap_or_else(|e| panic!("{e:#}"))
    }

    #[test]
    fn the_same_file_matches_and_another_one_is_named_by_its_sections() {
        let l = lex();
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../catalog/language/en.toml"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        l.check_same(&text).unwrap_or_else(|e| panic!("{e:#}"));
        // Layout and comments do not count.
        l.check_same(&format!("# signed\n{text}\n"))
            .unwrap_or_else(|e| panic!("{e:#}"));
        // The same file as meta.json holds it (JSON round trip).
        let json = serde_json::to_string(&l).unwrap_or_default();
        let back: Lexicon = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        back.check_same(&text).unwrap_or_else(|e| panic!("{e:#}"));
        // Another duration unit.
        let other = text.replacen("\nweek = 7\n", "\nweek = 6\n", 1);
        assert_ne!(other, text);
        let e = format!("{:#}", l.check_same(&other).expect_err("differs"));
        assert!(e.contains("[days]") && !e.contains("[numbers]"), "{e}");
        assert!(l.check_same("not = [toml").is_err());
    }

    #[test]
    fn numbers_and_durations_parse_from_their_span() {
        let l = lex();
        for (text, days) in [
            ("30", 30),
            ("thirty", 30),
            ("thirty-five days", 35),
            ("a week", 7),
            ("2 weeks", 14),
            ("two weeks", 14),
            ("30d", 30),
            ("1y", 365),
            ("six months", 180),
            ("a hundred and twenty days", 120),
            ("a fortnight", 14),
            ("one year", 365),
            ("a year and a month", 395),
            ("1 year 2 weeks", 379),
        ] {
            assert_eq!(l.parse_days(text), Some(days), "{text}");
        }
        for bad in [
            "",
            "soon",
            "30 parsecs",
            "two three",
            "1 2 days",
            "a week and 3",
            "a week 3",
            "30 days and 60 days",
            "a month and a year",
            "and",
        ] {
            assert_eq!(l.parse_days(bad), None, "{bad}");
        }
    }

    #[test]
    fn numbers_in_words_read_back() {
        let l = lex();
        for n in [1, 7, 14, 21, 30, 45, 90, 100, 120, 180, 365, 398] {
            let w = l.number_in_words(n).unwrap_or_else(|| panic!("{n}"));
            assert_eq!(l.parse_number(&w), Some(n), "{w}");
        }
    }
}
