//! The engine: the model, its persistence and the kernel, tied together.
//!
//! Kernel work (links, nftables) happens in the network namespace of the
//! thread that calls the engine; the daemon calls it from its main thread,
//! tests from a thread that entered a test namespace.
//!
//! A change is: validate into a new overlay and model (bad input stops here
//! and changes nothing), replace the firewall, reconcile links, persist the
//! overlay atomically; if a kernel step or the write fails, the previous
//! model is re-applied and the error returned.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hearth_common::contract::network as contract;
use serde::Serialize;

use crate::config::NetworkConfig;
use crate::error::NetError;
use crate::links::{self, Change};
use crate::model::{Model, Overlay};
use crate::nft::{self, ApplyReport, Ruleset};
use crate::watch::{self, Watcher};

/// Name of the overlay file in the state directory.
pub const STATE_FILE: &str = "network-state.json";

/// A change asked for over the bus (or by hearthctl, or a test).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Create a domain; `subnet` empty: a free /24 of the pool.
    Create {
        /// Domain name.
        name: String,
        /// IPv4 subnet or "".
        subnet: String,
    },
    /// Delete a domain and every allow naming it.
    Delete {
        /// Domain name.
        name: String,
    },
    /// Let `from` open connections to `to`.
    Allow {
        /// Source domain.
        from: String,
        /// Destination domain.
        to: String,
        /// Destination port, 0: any.
        port: u32,
        /// `tcp`, `udp` or "": any.
        protocol: String,
    },
    /// Remove every allow from `from` to `to`.
    Revoke {
        /// Source domain.
        from: String,
        /// Destination domain.
        to: String,
    },
}

/// What a reconcile did.
#[derive(Debug, Clone, Serialize)]
pub struct ReconcileReport {
    /// Link and sysctl changes.
    pub links: Vec<Change>,
    /// The firewall transaction, when the table was not already current.
    pub firewall: Option<ApplyReport>,
}

impl ReconcileReport {
    /// Number of changes made (each firewall replacement counts as one).
    pub fn changes(&self) -> usize {
        self.links.len() + usize::from(self.firewall.is_some())
    }

    /// `Reconcile`'s result.
    pub fn to_contract(&self) -> contract::Reconciled {
        use contract::LinkChange as L;
        let links = self
            .links
            .iter()
            .map(|c| match c.clone() {
                Change::CreateBridge { link } => L::CreateBridge { link },
                Change::CreateVlan { link, parent, id } => L::CreateVlan { link, parent, id },
                Change::Adopt { link } => L::Adopt { link },
                Change::SetMaster { link, master } => L::SetMaster { link, master },
                Change::SetUp { link } => L::SetUp { link },
                Change::AddAddress { link, address } => L::AddAddress { link, address },
                Change::RemoveAddress { link, address } => L::RemoveAddress { link, address },
                Change::DeleteLink { link } => L::DeleteLink { link },
                Change::Sysctl { key, value } => L::Sysctl { key, value },
            })
            .collect();
        let firewall = self.firewall.as_ref().map(|f| contract::FirewallApply {
            messages: f.messages,
            bytes: f.bytes,
            rules: f.rules,
            elements: f.elements,
            generation: f.generation,
            micros: u64::try_from(f.micros).unwrap_or(u64::MAX),
        });
        contract::Reconciled {
            links,
            firewall,
            changes: self.changes(),
        }
    }
}

/// The network engine.
#[derive(Debug)]
pub struct Engine {
    base: NetworkConfig,
    overlay: Overlay,
    model: Model,
    state_path: PathBuf,
    target: Arc<Mutex<Ruleset>>,
}

impl Engine {
    /// Loads the base configuration from `config` and the overlay from
    /// `state_dir`. Touches no kernel state.
    pub fn load(config: &Path, state_dir: &Path) -> Result<Engine, NetError> {
        let base: NetworkConfig = hearth_common::config::load(config)?;
        Engine::open(base, state_dir)
    }

    /// Opens the engine on a parsed base configuration. Touches no kernel
    /// state.
    pub fn open(base: NetworkConfig, state_dir: &Path) -> Result<Engine, NetError> {
        let state_path = state_dir.join(STATE_FILE);
        let overlay = match std::fs::read(&state_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| NetError::State {
                path: state_path.display().to_string(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Overlay::default(),
            Err(e) => {
                return Err(NetError::State {
                    path: state_path.display().to_string(),
                    message: e.to_string(),
                })
            }
        };
        let model = Model::compose(&base, &overlay)?;
        let target = Arc::new(Mutex::new(Ruleset::from_model(&model)));
        Ok(Engine {
            base,
            overlay,
            model,
            state_path,
            target,
        })
    }

    /// The effective model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The ruleset the table should hold.
    pub fn ruleset(&self) -> Ruleset {
        Ruleset::from_model(&self.model)
    }

    /// Brings the kernel in line with the model: links first reconciled,
    /// then the table replaced unless it already carries the ruleset.
    pub fn reconcile(&self) -> Result<ReconcileReport, NetError> {
        let rs = self.lock_target();
        let firewall = if nft::is_current(&rs)? {
            None
        } else {
            Some(nft::apply(&rs)?)
        };
        let links = links::reconcile(&self.model)?;
        Ok(ReconcileReport { links, firewall })
    }

    /// Replaces the table unconditionally.
    pub fn apply_firewall(&self) -> Result<ApplyReport, NetError> {
        let rs = self.lock_target();
        nft::apply(&rs)
    }

    /// Starts the watcher that restores the table after other programs
    /// change it, in the calling thread's network namespace.
    pub fn watch(&self) -> std::io::Result<Watcher> {
        watch::spawn(self.target.clone())
    }

    /// Like [`Engine::watch`], calling `on_restore` after every restore.
    pub fn watch_with(&self, on_restore: watch::OnRestore) -> std::io::Result<Watcher> {
        watch::spawn_with(self.target.clone(), Some(on_restore))
    }

    fn lock_target(&self) -> std::sync::MutexGuard<'_, Ruleset> {
        match self.target.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The domains (`ListDomains`).
    pub fn list(&self) -> Vec<contract::Domain> {
        self.model.domain_list()
    }

    /// The reachability matrix (`Matrix`).
    pub fn matrix(&self) -> contract::Matrix {
        self.model.matrix()
    }

    /// Creates a domain; `subnet` empty: a free /24 of the pool. Returns the
    /// domain created.
    pub fn create_domain(
        &mut self,
        name: &str,
        subnet: &str,
    ) -> Result<contract::DomainBrief, NetError> {
        let req = Request::Create {
            name: name.into(),
            subnet: subnet.into(),
        };
        self.request(&req, false)?
            .domains_created
            .pop()
            .ok_or_else(|| NetError::Conflict(format!("creating {name} created no domain")))
    }

    /// Deletes a domain and every allow naming it.
    pub fn delete_domain(&mut self, name: &str) -> Result<contract::NetChange, NetError> {
        self.request(&Request::Delete { name: name.into() }, false)
    }

    /// Allows `from` to reach `to` (port 0: any; protocol "": any).
    pub fn allow(
        &mut self,
        from: &str,
        to: &str,
        port: u32,
        protocol: &str,
    ) -> Result<contract::NetChange, NetError> {
        let req = Request::Allow {
            from: from.into(),
            to: to.into(),
            port,
            protocol: protocol.into(),
        };
        self.request(&req, false)
    }

    /// Revokes every allow from `from` to `to`.
    pub fn revoke(&mut self, from: &str, to: &str) -> Result<contract::NetChange, NetError> {
        let req = Request::Revoke {
            from: from.into(),
            to: to.into(),
        };
        self.request(&req, false)
    }

    /// Validates `req` into the overlay and model it would produce. Changes
    /// neither the kernel nor the disk; a create reads the addresses the
    /// appliance holds (in the calling thread's network namespace), which a
    /// new subnet must stay clear of.
    pub fn plan(&self, req: &Request) -> Result<(Overlay, Model, contract::NetAction), NetError> {
        let (overlay, action) = match req {
            Request::Create { name, subnet } => {
                let host = links::host_networks(&self.model)?;
                let (o, _) = self.model.plan_create(&self.overlay, name, subnet, &host)?;
                (o, contract::NetAction::Create)
            }
            Request::Delete { name } => {
                let o = self.model.plan_delete(&self.base, &self.overlay, name)?;
                (o, contract::NetAction::Delete)
            }
            Request::Allow {
                from,
                to,
                port,
                protocol,
            } => {
                let (o, _) = self
                    .model
                    .plan_allow(&self.overlay, from, to, *port, protocol)?;
                (o, contract::NetAction::Allow)
            }
            Request::Revoke { from, to } => {
                let o = self.model.plan_revoke(&self.overlay, from, to)?;
                (o, contract::NetAction::Revoke)
            }
        };
        let model = Model::compose(&self.base, &overlay)?;
        Ok((overlay, model, action))
    }

    /// Carries out `req` (or, with `dry_run`, only validates it) and returns
    /// what it changes: the diff between the network compiled before and the
    /// one compiled after (docs/dbus/network.md). A refused request changes
    /// nothing; one that changes nothing (an allow already in force) touches
    /// neither the kernel nor the disk.
    pub fn request(
        &mut self,
        req: &Request,
        dry_run: bool,
    ) -> Result<contract::NetChange, NetError> {
        let (overlay, model, action) = self.plan(req)?;
        let diff = contract::NetChange::between(
            action,
            dry_run,
            &self.model.net_state(),
            &model.net_state(),
        );
        if !dry_run && overlay != self.overlay {
            self.commit(overlay)?;
        }
        Ok(diff)
    }

    /// Everything: the model, the matrix and the kernel table's state.
    pub fn show(&self) -> contract::Show {
        let rs = self.ruleset();
        let current = nft::is_current(&rs);
        contract::Show {
            admin: self.model.admin.clone(),
            uplink: self.model.uplink.clone(),
            pool: self.model.pool,
            domains: self.model.domain_list(),
            allows: self.model.allow_list(),
            matrix: self.model.matrix().matrix,
            table: contract::TableStatus {
                family: "inet".into(),
                name: nft::TABLE.into(),
                rules: rs.rule_count(),
                elements: rs.element_counts().iter().sum::<usize>(),
                current: current.as_ref().ok().copied(),
                error: current.err().map(|e| e.to_string()),
            },
        }
    }

    fn commit(&mut self, overlay: Overlay) -> Result<ReconcileReport, NetError> {
        let model = Model::compose(&self.base, &overlay)?;
        let rs = Ruleset::from_model(&model);
        let target = self.target.clone();
        let mut guard = match target.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let old_rs = guard.clone();
        let result = (|| {
            let firewall = nft::apply(&rs)?;
            let links = links::reconcile(&model)?;
            if let Some(dir) = self.state_path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| NetError::State {
                    path: dir.display().to_string(),
                    message: e.to_string(),
                })?;
            }
            hearth_common::fsutil::write_json_atomic(&self.state_path, &overlay).map_err(|e| {
                NetError::State {
                    path: self.state_path.display().to_string(),
                    message: e.to_string(),
                }
            })?;
            Ok(ReconcileReport {
                links,
                firewall: Some(firewall),
            })
        })();
        match result {
            Ok(rep) => {
                *guard = rs;
                self.overlay = overlay;
                self.model = model;
                Ok(rep)
            }
            Err(e) => {
                tracing::error!("change failed, restoring the previous network: {e}");
                if let Err(e2) = nft::apply(&old_rs) {
                    tracing::error!("restoring the previous table failed: {e2}");
                }
                if let Err(e2) = links::reconcile(&self.model) {
                    tracing::error!("restoring the previous links failed: {e2}");
                }
                Err(e)
            }
        }
    }
}
