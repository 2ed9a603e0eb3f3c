//! What each command does over the bus, and how its result is shown.

pub mod attest;
pub mod devices;
pub mod dns;
pub mod intent;
pub mod net;
pub mod pki;
pub mod status;

use hearth_common::HearthError;
use serde::Serialize;
use serde_json::Value;

/// A command's result: JSON for `--json`, text for people, and whether it
/// succeeded (exit 0) or was refused or failed (exit 1).
#[derive(Debug)]
pub struct Output {
    /// True for exit code 0.
    pub ok: bool,
    /// The `--json` form.
    pub json: Value,
    /// The readable form.
    pub text: String,
}

impl Output {
    /// A successful result.
    pub fn ok(json: Value, text: impl Into<String>) -> Self {
        Output {
            ok: true,
            json,
            text: text.into(),
        }
    }

    /// A refused or failed result that is not an error of the bus.
    pub fn failed(json: Value, text: impl Into<String>) -> Self {
        Output {
            ok: false,
            json,
            text: text.into(),
        }
    }
}

/// A read step's answer (a playbook that only reads) shown as the
/// matching command shows it; `None` for other calls.
pub fn read_answer(call: &str, text: &str) -> Option<String> {
    net::answer(call, text)
        .or_else(|| devices::answer(call, text))
        .or_else(|| dns::answer(call, text))
        .or_else(|| pki::answer(call, text))
        .or_else(|| attest::answer(call, text))
}

/// The `--json` form of a typed result.
pub fn json<T: Serialize>(v: &T) -> Result<Value, HearthError> {
    serde_json::to_value(v).map_err(|e| HearthError::Internal(format!("JSON: {e}")))
}

/// An optional value as text, `-` when absent.
pub fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".into(), T::to_string)
}

/// A table of `items` under `headers`, one row each as `row` writes it
/// (as many cells as headers).
pub fn table_of<T, const N: usize>(
    headers: [&str; N],
    items: impl IntoIterator<Item = T>,
    row: impl Fn(T) -> [String; N],
) -> String {
    let rows: Vec<Vec<String>> = items.into_iter().map(|x| Vec::from(row(x))).collect();
    table(&headers, &rows)
}

/// Renders rows as an aligned table with a header line.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = vec![line(headers.to_vec())];
    for row in rows {
        out.push(line(row.iter().map(String::as_str).collect()));
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let t = table(
            &["NAME", "STATE"],
            &[
                vec!["hearth-dnsd".into(), "up".into()],
                vec!["x".into(), "down".into()],
            ],
        );
        assert_eq!(t, "NAME         STATE\nhearth-dnsd  up\nx            down");
    }
}
