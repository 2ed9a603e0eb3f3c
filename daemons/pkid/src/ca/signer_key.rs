//! The playbook signer: its key in the token, its codeSigning certificate
//! (issued by the ceremony only, renewed when it nears its end), and the
//! signatures it makes over playbooks.

use super::*;

/// The playbook signer: a key in the token and its codeSigning certificate.
pub(super) struct PlaybookSigner {
    pub(super) pem: String,
    pub(super) serial: String,
    pub(super) not_after: OffsetDateTime,
    pub(super) key: HsmKey,
}

/// Renew the playbook signer's certificate when fewer days than this remain.
const SIGNER_RENEW_DAYS: i64 = 30;

impl Engine {
    pub(super) fn signer_path(&self) -> PathBuf {
        self.state_dir.join("playbook-signer.pem")
    }

    pub(super) fn signer_label(&self) -> String {
        format!("{}-playbook-signer", self.cfg.hsm.key_label_prefix)
    }

    /// The DNS name in the playbook signer's certificate.
    fn signer_name(&self) -> Result<SanName, PkiError> {
        let zone = self
            .cfg
            .ca
            .zones
            .first()
            .ok_or_else(|| PkiError::Invalid("ca.zones is empty".into()))?;
        SanName::parse("name", &format!("playbook-signer.{}", zone.as_str()))
    }

    /// Makes sure the playbook signer exists and its certificate is neither
    /// revoked nor about to expire: creates its key in the token when
    /// missing and (re-)certifies it. Returns whether anything was created.
    pub(super) fn ensure_playbook_signer(&mut self) -> Result<bool, PkiError> {
        let ca = self.ca()?;
        if let Some(s) = &ca.signer {
            if self
                .inventory
                .find(&s.serial)
                .iter()
                .any(|r| r.revoked.is_some())
            {
                return Err(PkiError::Conflict(format!(
                    "the playbook signer's certificate {} is revoked; delete {} and the token key {:?} to make a new signer",
                    s.serial,
                    self.signer_path().display(),
                    self.signer_label()
                )));
            }
            if s.not_after - now() > Duration::days(SIGNER_RENEW_DAYS) {
                return Ok(false);
            }
        }
        let label = self.signer_label();
        let key = match self.token.find_key(&label)? {
            Some(k) => k,
            None => self
                .token
                .generate_ec_key(&label, hearth_hsm::Curve::P256)?,
        };
        if key.curve != hearth_hsm::Curve::P256 {
            return Err(PkiError::Conflict(format!(
                "token key {label:?} is not a P-256 key"
            )));
        }
        let key = HsmKey::new(self.token.clone(), key);
        let names = vec![self.signer_name()?];
        self.check_names(&names)?;
        let (der, serial, nb, na) =
            self.sign_leaf(&names, &key, false, MAX_LEAF_DAYS, Profile::PlaybookSigner)?;
        let path = self.signer_path();
        write_atomic(&path, pem_cert(&der).as_bytes(), 0o644)
            .map_err(PkiError::io("cannot write", &path))?;
        let record = self.record(
            &names,
            &der,
            serial,
            (nb, na),
            Profile::PlaybookSigner,
            KEY_TYPE_P256.into(),
            KeySource::Token,
        )?;
        let signer = PlaybookSigner {
            pem: record.certificate.clone(),
            serial: record.serial.clone(),
            not_after: record.not_after,
            key,
        };
        if let Some(ca) = self.ca.as_mut() {
            ca.signer = Some(signer);
        }
        tracing::info!(serial = %record.serial, "certified the playbook signer");
        Ok(true)
    }

    /// Signs `payload` (its bytes, exactly) with the playbook-signer key in
    /// the token: ECDSA P-256 over SHA-256, DER, base64. Creates or renews
    /// the signer's certificate first when needed.
    pub fn sign_playbook(&mut self, payload: &[u8]) -> Result<PlaybookSignature, PkiError> {
        use base64::Engine as _;
        self.ensure_playbook_signer()?;
        let ca = self.ca()?;
        let signer = ca
            .signer
            .as_ref()
            .ok_or_else(|| PkiError::NotFound("no playbook signer".into()))?;
        let der = self.token.sign(signer.key.key(), payload)?;
        Ok(PlaybookSignature {
            algorithm: "ecdsa-p256-sha256",
            signature: base64::engine::general_purpose::STANDARD.encode(der),
            serial: signer.serial.clone(),
            chain_pem: format!("{}{}", signer.pem, ca.issuing_pem),
        })
    }

    /// The playbook signer's certificate then the issuing CA (PEM), creating
    /// or renewing it first when needed.
    pub fn playbook_signer_chain(&mut self) -> Result<String, PkiError> {
        self.ensure_playbook_signer()?;
        let ca = self.ca()?;
        let signer = ca
            .signer
            .as_ref()
            .ok_or_else(|| PkiError::NotFound("no playbook signer".into()))?;
        Ok(format!("{}{}", signer.pem, ca.issuing_pem))
    }
}
