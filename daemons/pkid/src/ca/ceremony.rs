//! The key ceremony: the root and issuing keys generated in the token, their
//! certificates signed and written to the state directory.

use super::*;

impl Engine {
    /// True once the ceremony has completed.
    pub fn is_initialized(&self) -> bool {
        self.ca.is_some()
    }

    /// The key ceremony. Creates, as needed: the root key in the token and
    /// the self-signed root (pathlen 1, name constraints = configured zones
    /// and subnets), then the issuing key and its certificate signed by the
    /// root. Idempotent: an existing root is never replaced; a token key
    /// without its certificate is refused rather than re-certified.
    pub fn init(&mut self) -> Result<CaInfo, PkiError> {
        let mut created = false;
        std::fs::create_dir_all(&self.state_dir)
            .map_err(PkiError::io("cannot create", &self.state_dir))?;
        let root_path = self.root_path();
        let root_label = self.root_label();
        let (root_der, root_key) = match self.load_pair(&root_path, &root_label)? {
            Some((_, der, key, _)) => (der, key),
            None => {
                if self.token.find_key(&root_label)?.is_some() {
                    return Err(PkiError::Conflict(format!(
                        "token {:?} already holds a root key {root_label:?} but {} is missing; \
                         restore the state directory (the root is never replaced)",
                        self.token.label(),
                        root_path.display()
                    )));
                }
                let key = self
                    .token
                    .generate_ec_key(&root_label, self.cfg.ca.root_curve)?;
                let key = HsmKey::new(self.token.clone(), key);
                let cert = self.root_params()?.self_signed(&key)?;
                write_atomic(&root_path, pem_cert(cert.der()).as_bytes(), 0o644)
                    .map_err(PkiError::io("cannot write", &root_path))?;
                tracing::info!(path = %root_path.display(), "created the root CA");
                created = true;
                (cert.der().to_vec(), key)
            }
        };
        let issuing_path = self.issuing_path();
        let issuing_label = self.issuing_label();
        if self.load_pair(&issuing_path, &issuing_label)?.is_none() {
            let key = match self.token.find_key(&issuing_label)? {
                Some(k) => k,
                None => self
                    .token
                    .generate_ec_key(&issuing_label, self.cfg.ca.issuing_curve)?,
            };
            let key = HsmKey::new(self.token.clone(), key);
            let root_issuer = Issuer::from_ca_cert_der(&root_der.clone().into(), root_key)?;
            let cert = self.issuing_params()?.signed_by(&key, &root_issuer)?;
            write_atomic(&issuing_path, pem_cert(cert.der()).as_bytes(), 0o644)
                .map_err(PkiError::io("cannot write", &issuing_path))?;
            tracing::info!(path = %issuing_path.display(), "created the issuing CA");
            created = true;
        }
        self.ca = self.load_ca()?;
        created |= self.ensure_playbook_signer()?;
        if created || !self.crl_path().exists() {
            self.write_crl()?;
        }
        let mut info = self.info()?;
        info.created = created;
        Ok(info)
    }

    fn root_params(&self) -> Result<CertificateParams, PkiError> {
        let mut p = CertificateParams::default();
        let t = now();
        p.not_before = t - Duration::minutes(5);
        p.not_after = t + Duration::days(self.cfg.ca.root_days.into());
        p.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
        p.distinguished_name = dn(&self.cfg.ca.organization, ROOT_CN);
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let mut permitted: Vec<GeneralSubtree> = self
            .cfg
            .ca
            .zones
            .iter()
            .map(|z| GeneralSubtree::DnsName(z.as_str().to_owned()))
            .collect();
        permitted.extend(self.cfg.ca.subnets.iter().map(|c| {
            GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(
                c.net().network(),
                c.prefix_len(),
            ))
        }));
        p.name_constraints = Some(NameConstraints {
            permitted_subtrees: permitted,
            excluded_subtrees: Vec::new(),
        });
        p.key_identifier_method = KeyIdMethod::Sha256;
        Ok(p)
    }

    fn issuing_params(&self) -> Result<CertificateParams, PkiError> {
        let mut p = CertificateParams::default();
        let t = now();
        p.not_before = t - Duration::minutes(5);
        p.not_after = t + Duration::days(self.cfg.ca.issuing_days.into());
        p.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
        p.distinguished_name = dn(&self.cfg.ca.organization, ISSUING_CN);
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.use_authority_key_identifier_extension = true;
        p.key_identifier_method = KeyIdMethod::Sha256;
        Ok(p)
    }
}
