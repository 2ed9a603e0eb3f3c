//! Issuance: leaves for CSRs and for keys generated here (LAN devices,
//! daemons), the names and lifetimes they may carry, and the inventory of
//! what was issued.

use super::*;

/// A leaf signed for a host-generated key, not yet recorded.
struct Leaf {
    names: Vec<SanName>,
    der: Vec<u8>,
    serial: String,
    window: (OffsetDateTime, OffsetDateTime),
    key: KeyPair,
}

impl Engine {
    /// Refuses names outside the root's constraints.
    pub fn check_names(&self, names: &[SanName]) -> Result<(), PkiError> {
        for n in names {
            let ok = match n {
                SanName::Dns(d) => self.cfg.ca.zones.iter().any(|z| d.is_within(z)),
                SanName::Ip(ip) => self.cfg.ca.subnets.iter().any(|c| c.contains(ip)),
            };
            if !ok {
                let zones: Vec<_> = self.cfg.ca.zones.iter().map(|z| z.as_str()).collect();
                let subnets: Vec<_> = self.cfg.ca.subnets.iter().map(|s| s.to_string()).collect();
                return Err(PkiError::Invalid(format!(
                    "name {n} is outside the CA's name constraints (zones: {}; subnets: {})",
                    zones.join(", "),
                    if subnets.is_empty() {
                        "none".into()
                    } else {
                        subnets.join(", ")
                    }
                )));
            }
        }
        Ok(())
    }

    fn days(&self, days: u32) -> Result<u32, PkiError> {
        match days {
            0 => Ok(self.cfg.issue.default_days),
            d if d > MAX_LEAF_DAYS => Err(PkiError::Invalid(format!(
                "invalid days {d}: at most {MAX_LEAF_DAYS}"
            ))),
            d => Ok(d),
        }
    }

    /// Builds and signs a leaf; records nothing.
    pub(super) fn sign_leaf(
        &self,
        names: &[SanName],
        key: &impl PublicKeyData,
        is_rsa: bool,
        days: u32,
        profile: Profile,
    ) -> Result<(Vec<u8>, String, OffsetDateTime, OffsetDateTime), PkiError> {
        let ca = self.ca()?;
        let first = names
            .first()
            .ok_or_else(|| PkiError::Invalid("no name to certify".into()))?;
        let serial = random_serial()?;
        let mut p = CertificateParams::default();
        let t = now();
        p.not_before = t - Duration::minutes(5);
        p.not_after = (t + Duration::days(days.into())).min(ca.issuing_not_after);
        p.serial_number = Some(SerialNumber::from_slice(&serial));
        p.distinguished_name = dn(&self.cfg.ca.organization, &first.to_string());
        p.subject_alt_names = names
            .iter()
            .map(SanName::to_san)
            .collect::<Result<_, _>>()?;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if is_rsa && profile != Profile::PlaybookSigner {
            p.key_usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        p.extended_key_usages = match profile {
            Profile::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Profile::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Profile::Daemon => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Profile::PlaybookSigner => vec![ExtendedKeyUsagePurpose::CodeSigning],
        };
        p.use_authority_key_identifier_extension = true;
        p.key_identifier_method = KeyIdMethod::Sha256;
        let cert = p.signed_by(key, &ca.issuer)?;
        Ok((
            cert.der().to_vec(),
            hex::encode(serial),
            p.not_before,
            p.not_after,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn record(
        &mut self,
        names: &[SanName],
        der: &[u8],
        serial: String,
        window: (OffsetDateTime, OffsetDateTime),
        profile: Profile,
        key_type: String,
        key_source: KeySource,
    ) -> Result<Record, PkiError> {
        let record = Record {
            serial,
            names: names.iter().map(|n| n.to_string()).collect(),
            profile,
            key_type,
            key_source,
            not_before: window.0,
            not_after: window.1,
            revoked: None,
            certificate: pem_cert(der),
        };
        let mut inv = self.inventory.clone();
        inv.records.push(record.clone());
        inv.save(&inventory::path(&self.state_dir))?;
        self.inventory = inv;
        tracing::info!(serial = %record.serial, names = ?record.names, profile = %profile, "issued certificate");
        Ok(record)
    }

    fn chain(&self, leaf_pem: &str) -> Result<String, PkiError> {
        Ok(format!("{leaf_pem}{}", self.ca()?.issuing_pem))
    }

    /// Issues a certificate for a CSR: size limit, signature, key type, and
    /// every requested name within the constraints. `days` 0 means the
    /// default.
    pub fn issue_from_csr(
        &mut self,
        csr_pem: &str,
        days: u32,
        profile: Profile,
    ) -> Result<Issued, PkiError> {
        refuse_signer_profile(profile, "from a CSR")?;
        self.ca()?;
        let days = self.days(days)?;
        let req = csr::parse(csr_pem, self.cfg.issue.max_csr_bytes)?;
        self.check_names(&req.names)?;
        let (der, serial, nb, na) =
            self.sign_leaf(&req.names, &req.key, req.key.is_rsa, days, profile)?;
        let record = self.record(
            &req.names,
            &der,
            serial,
            (nb, na),
            profile,
            req.key.kind.clone(),
            KeySource::Csr,
        )?;
        let chain_pem = self.chain(&record.certificate)?;
        Ok(Issued {
            record,
            chain_pem,
            key_path: None,
            chain_path: None,
        })
    }

    /// Checks a name, generates a P-256 key on the host and signs a leaf for
    /// it; records nothing yet.
    fn generate_leaf(&self, name: &str, days: u32, profile: Profile) -> Result<Leaf, PkiError> {
        self.ca()?;
        let days = self.days(days)?;
        let names = parse_names(name)?;
        self.check_names(&names)?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let (der, serial, nb, na) = self.sign_leaf(&names, &key, false, days, profile)?;
        Ok(Leaf {
            names,
            der,
            serial,
            window: (nb, na),
            key,
        })
    }

    /// Issues a certificate for a LAN device that cannot make a CSR: a P-256
    /// key is generated here and written with the chain (mode 0600,
    /// atomically) to the export directory as `<name>.key.pem` and
    /// `<name>.pem`.
    pub fn issue_for_name(
        &mut self,
        name: &str,
        days: u32,
        profile: Profile,
    ) -> Result<Issued, PkiError> {
        refuse_signer_profile(profile, "with an exported key")?;
        let leaf = self.generate_leaf(name, days, profile)?;
        let chain_pem = self.chain(&pem_cert(&leaf.der))?;
        let dir = self.cfg.export_dir(&self.state_dir);
        create_private_dir(&dir)?;
        let stem = leaf.names[0].to_string();
        let key_path = dir.join(format!("{stem}.key.pem"));
        let chain_path = dir.join(format!("{stem}.pem"));
        // Key files first: a record is only made for a certificate whose key
        // reached its owner.
        let key_pem = Zeroizing::new(leaf.key.serialize_pem());
        write_atomic(&key_path, key_pem.as_bytes(), 0o600)
            .map_err(PkiError::io("cannot write", &key_path))?;
        write_atomic(&chain_path, chain_pem.as_bytes(), 0o600)
            .map_err(PkiError::io("cannot write", &chain_path))?;
        let record = self.record(
            &leaf.names,
            &leaf.der,
            leaf.serial,
            leaf.window,
            profile,
            KEY_TYPE_P256.into(),
            KeySource::Export,
        )?;
        Ok(Issued {
            record,
            chain_pem,
            key_path: Some(key_path),
            chain_path: Some(chain_path),
        })
    }

    /// Issues a `daemon` certificate for a Hearth daemon: the key is
    /// generated here and returned (never written to disk by the CA).
    pub fn issue_daemon_certificate(&mut self, name: &str) -> Result<DaemonCertificate, PkiError> {
        let leaf = self.generate_leaf(name, 0, Profile::Daemon)?;
        let record = self.record(
            &leaf.names,
            &leaf.der,
            leaf.serial,
            leaf.window,
            Profile::Daemon,
            KEY_TYPE_P256.into(),
            KeySource::Daemon,
        )?;
        Ok(DaemonCertificate {
            chain_pem: self.chain(&record.certificate)?,
            serial: record.serial,
            not_after: record.not_after,
            key_pem: Zeroizing::new(leaf.key.serialize_pem()),
        })
    }

    /// The inventory's records, oldest first: the state a change's diff is
    /// computed from.
    pub fn certificates(&self) -> &[Record] {
        &self.inventory.records
    }

    /// All issued certificates, oldest first.
    pub fn list(&self) -> Vec<Summary> {
        let t = now();
        self.inventory
            .records
            .iter()
            .map(|r| Summary {
                serial: r.serial.clone(),
                names: r.names.clone(),
                profile: r.profile,
                status: if r.revoked.is_some() {
                    "revoked"
                } else if r.not_after < t {
                    "expired"
                } else {
                    "valid"
                },
                not_after: r.not_after,
            })
            .collect()
    }

    /// The records for a serial or a name.
    pub fn show(&self, serial_or_name: &str) -> Result<Vec<Record>, PkiError> {
        let found: Vec<Record> = self
            .inventory
            .find(serial_or_name)
            .into_iter()
            .cloned()
            .collect();
        if found.is_empty() {
            return Err(PkiError::NotFound(format!(
                "no certificate with serial or name {serial_or_name:?}"
            )));
        }
        Ok(found)
    }
}

/// Parses `name`: one name, or several separated by commas (the first is
/// the subject CN and the export file name), e.g. `attest.home.arpa,127.0.0.1`.
fn parse_names(name: &str) -> Result<Vec<SanName>, PkiError> {
    let mut names = Vec::new();
    for part in name.split(',') {
        let n = SanName::parse("name", part.trim())?;
        if !names.contains(&n) {
            names.push(n);
        }
    }
    if names.len() > 16 {
        return Err(PkiError::Invalid(format!(
            "invalid name {name:?}: at most 16 names"
        )));
    }
    Ok(names)
}

/// The playbook-signer profile is issued by the ceremony only, to the key
/// that lives in the token: a signer certificate for a CSR or an exported
/// key would let whoever holds that key sign playbooks the gate installs.
fn refuse_signer_profile(profile: Profile, how: &str) -> Result<(), PkiError> {
    if profile == Profile::PlaybookSigner {
        return Err(PkiError::Invalid(format!(
            "profile playbook-signer is never issued {how}: the only playbook signer is the key the ceremony made in the token (SignPlaybook)"
        )));
    }
    Ok(())
}
