//! Revocation and the CRL: revoking by serial or name, and the CRL signed
//! by the issuing key, refreshed before its next update.

use super::*;

impl Engine {
    /// Revokes by serial (hex) or by name (every unrevoked certificate for
    /// it), then publishes a new CRL. Returns the serials revoked.
    pub fn revoke(&mut self, serial_or_name: &str) -> Result<Vec<String>, PkiError> {
        self.ca()?;
        let matches: Vec<String> = self
            .inventory
            .find(serial_or_name)
            .into_iter()
            .map(|r| r.serial.clone())
            .collect();
        if matches.is_empty() {
            return Err(PkiError::NotFound(format!(
                "no certificate with serial or name {serial_or_name:?}"
            )));
        }
        let mut inv = self.inventory.clone();
        let at = now();
        let mut revoked = Vec::new();
        for r in inv.records.iter_mut() {
            if matches.contains(&r.serial) && r.revoked.is_none() {
                r.revoked = Some(Revocation { at });
                revoked.push(r.serial.clone());
            }
        }
        if revoked.is_empty() {
            return Err(PkiError::Conflict(format!(
                "every certificate matching {serial_or_name:?} is already revoked"
            )));
        }
        inv.save(&inventory::path(&self.state_dir))?;
        self.inventory = inv;
        tracing::info!(serials = ?revoked, "revoked");
        self.write_crl()?;
        Ok(revoked)
    }

    /// Where the CRL is written.
    pub fn crl_path(&self) -> PathBuf {
        self.cfg.crl_path(&self.state_dir)
    }

    /// The current CRL (PEM), regenerated first if it is due.
    pub fn crl_pem(&mut self) -> Result<String, PkiError> {
        self.ca()?;
        self.refresh_crl_if_due()?;
        let path = self.crl_path();
        std::fs::read_to_string(&path).map_err(PkiError::io("cannot read", &path))
    }

    /// Regenerates the CRL when it is missing, unreadable, or expires within
    /// `crl.refresh_before_hours`. Returns whether it was regenerated.
    pub fn refresh_crl_if_due(&mut self) -> Result<bool, PkiError> {
        if self.ca.is_none() {
            return Ok(false);
        }
        let next = match self.crl_next_update {
            Some(n) => Some(n),
            None => std::fs::read_to_string(self.crl_path())
                .ok()
                .and_then(|t| pem::parse(t).ok())
                .and_then(|p| {
                    x509_parser::parse_x509_crl(p.contents())
                        .ok()
                        .and_then(|(_, crl)| crl.next_update().map(|n| n.to_datetime()))
                }),
        };
        let due = next
            .is_none_or(|n| n - now() < Duration::hours(self.cfg.crl.refresh_before_hours.into()));
        if due {
            self.write_crl()?;
        } else {
            self.crl_next_update = next;
        }
        Ok(due)
    }

    pub(super) fn write_crl(&mut self) -> Result<(), PkiError> {
        let ca = self.ca()?;
        let t = now();
        let next = t + Duration::hours(self.cfg.crl.validity_hours.into());
        let number = self.inventory.crl_number + 1;
        let revoked = self
            .inventory
            .records
            .iter()
            .filter_map(|r| {
                r.revoked.as_ref().map(|rev| {
                    Ok(RevokedCertParams {
                        serial_number: SerialNumber::from_slice(&hex::decode(&r.serial).map_err(
                            |_| PkiError::Corrupt {
                                path: inventory::path(&self.state_dir),
                                why: format!("serial {:?} is not hex", r.serial),
                            },
                        )?),
                        revocation_time: rev.at,
                        reason_code: None,
                        invalidity_date: None,
                    })
                })
            })
            .collect::<Result<Vec<_>, PkiError>>()?;
        let params = CertificateRevocationListParams {
            this_update: t,
            next_update: next,
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: revoked,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&ca.issuer)?;
        let pem_text = crl.pem()?;
        let mut inv = self.inventory.clone();
        inv.crl_number = number;
        inv.save(&inventory::path(&self.state_dir))?;
        self.inventory = inv;
        let path = self.crl_path();
        write_atomic(&path, pem_text.as_bytes(), 0o644)
            .map_err(PkiError::io("cannot write", &path))?;
        self.crl_next_update = Some(next);
        tracing::info!(number, path = %path.display(), "published CRL");
        Ok(())
    }
}
