//! Vendors by MAC prefix, from IEEE's list as Debian's `ieee-data` ships it
//! (`/usr/share/ieee-data/oui.txt`): lines `00-1A-2B   (hex)\t\tVendor`.
//! An absent or unreadable file means no vendor names, not an error.

use std::collections::HashMap;
use std::path::Path;

use hearth_common::mac::MacAddr;

/// The loaded table.
#[derive(Debug, Default, Clone)]
pub struct Oui {
    vendors: HashMap<String, String>,
}

impl Oui {
    /// Loads `path`; empty when it cannot be read.
    pub fn load(path: &Path) -> Oui {
        match std::fs::read(path) {
            Ok(bytes) => {
                let oui = Oui::parse(&String::from_utf8_lossy(&bytes));
                tracing::info!(file = %path.display(), prefixes = oui.len(), "vendor list loaded");
                oui
            }
            Err(e) => {
                tracing::info!(file = %path.display(), "no vendor list ({e}); vendors are not named");
                Oui::default()
            }
        }
    }

    /// Parses the text of `oui.txt`.
    pub fn parse(text: &str) -> Oui {
        let mut vendors = HashMap::new();
        for line in text.lines() {
            let Some((prefix, rest)) = line.split_once("(hex)") else {
                continue;
            };
            let key: String = prefix.trim().replace('-', "").to_ascii_uppercase();
            let vendor = rest.trim();
            if key.len() == 6 && key.bytes().all(|b| b.is_ascii_hexdigit()) && !vendor.is_empty() {
                vendors.insert(key, vendor.to_string());
            }
        }
        Oui { vendors }
    }

    /// How many prefixes are known.
    pub fn len(&self) -> usize {
        self.vendors.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.vendors.is_empty()
    }

    /// The vendor of `mac`, if known. Locally administered addresses
    /// (randomised by phones) have none.
    pub fn vendor(&self, mac: &MacAddr) -> Option<&str> {
        if mac.octets()[0] & 0x02 != 0 {
            return None;
        }
        self.vendors.get(&mac.oui()).map(String::as_str)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_ieee_format() {
        let text = "OUI/MA-L\t\t\tOrganization\n00-00-0C   (hex)\t\tCisco Systems, Inc\n00000C     (base 16)\t\tCisco Systems, Inc\n\t\t\t\t170 WEST TASMAN DRIVE\n";
        let o = Oui::parse(text);
        assert_eq!(o.len(), 1);
        let m = MacAddr::parse("00:00:0c:12:34:56").unwrap();
        assert_eq!(o.vendor(&m), Some("Cisco Systems, Inc"));
        let local = MacAddr::parse("02:00:0c:12:34:56").unwrap();
        assert_eq!(o.vendor(&local), None);
    }
}
