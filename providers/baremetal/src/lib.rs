//! flotilla's bare-metal provider: machines the team owns, reached over SSH.
//!
//! A host is an offer of quantity one. This crate does what a cloud API does for a VM, with
//! shell commands over SSH ([`ssh`], russh): it reads what a host has ([`probe`]: CPUs,
//! memory, disk, GPUs through `nvidia-smi` and `amd-smi`/`rocm-smi`), and it "creates" a node
//! by leaving a claim file on the host ([`claim`]) and running the host's `setup` commands, and
//! "deletes" it by removing the claim. The claim carries the state's lineage and the node's
//! address, so a second state sees the host is taken and by whom, and an apply that died after
//! claiming finds its own claim and adopts it.
//!
//! [`BaremetalProvider`] implements [`Provider`]; [`BaremetalProvider::probe_hosts`] is what
//! the CLI runs before planning, turning each host into plain [`HostProbe`] data for the
//! planner.

pub mod claim;
pub mod probe;
pub mod ssh;

use claim::Claim;
use flotilla_core::catalog::{Offer, ProviderKind};
use flotilla_core::config::{
    BaremetalProvider as BaremetalConfig, Host, HostAvailability, HostFacts, HostProbe,
};
use flotilla_core::plan::{HostNote, HostNoteKind};
use flotilla_core::provider::{
    FailureKind, GatewayRequest, InstanceRequest, Observed, Ownership, Provider, ProviderError,
    VolumeRequest,
};
use flotilla_core::state::{BoxFuture, HostRecord, Resource, ResourceKind, State};
use serde_json::{Value, json};
use ssh::{KnownHosts, Session, SshError, Target};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The provider this crate adapts.
pub const KIND: ProviderKind = ProviderKind::Baremetal;

/// The region every host's offer is in.
pub const REGION: &str = "onprem";

/// Where the lines of `setup` commands' output go (the CLI prints them).
pub type OutputSink = Arc<dyn Fn(&str) + Send + Sync>;

/// The declared hosts, reached over SSH.
#[derive(Clone)]
pub struct BaremetalProvider {
    hosts: Vec<Host>,
    known: KnownHosts,
    output: Option<OutputSink>,
}

impl std::fmt::Debug for BaremetalProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaremetalProvider")
            .field("hosts", &self.hosts.len())
            .finish_non_exhaustive()
    }
}

/// What probing one host found.
#[derive(Debug, Clone)]
pub struct Probed {
    /// Its hardware.
    pub facts: HostFacts,
    /// The claim on it, if any.
    pub claim: Option<Claim>,
    /// A claim file that is not flotilla's JSON.
    pub claim_unreadable: Option<String>,
    /// Its host key's fingerprint.
    pub fingerprint: String,
    /// Whether the key was seen for the first time (trusted on first use).
    pub first_contact: bool,
}

/// One host's probe, for the plan.
#[derive(Debug, Clone)]
pub struct HostReport {
    /// The host's name.
    pub host: String,
    /// `address:port`.
    pub endpoint: String,
    /// What was found, or why the host could not be probed.
    pub result: Result<Probed, SshError>,
}

impl HostReport {
    /// What the plan reports about this host, if anything: a key trusted on first use, or
    /// why the host is not offered (for a state of `lineage`).
    pub fn note(&self, lineage: &str) -> Option<HostNote> {
        let (kind, detail) = match &self.result {
            Err(e @ SshError::Unreachable { .. }) => (HostNoteKind::Unreachable, e.to_string()),
            Err(e) => (HostNoteKind::Refused, e.to_string()),
            Ok(p) => match self.probe(lineage).availability {
                HostAvailability::ClaimedBy { lineage, address } => {
                    (HostNoteKind::Claimed, format!("{lineage} ({address})"))
                }
                HostAvailability::Unreachable(why) => (HostNoteKind::Refused, why),
                _ if p.first_contact => (HostNoteKind::NewKey, p.fingerprint.clone()),
                _ => return None,
            },
        };
        Some(HostNote {
            host: self.host.clone(),
            kind,
            detail,
        })
    }

    /// The record state keeps of this host after a successful probe at `now`: its key (the
    /// recorded one, since a different key fails the probe) and facts. `None` when it was
    /// not reached, so the record from an earlier run stays.
    pub fn record(&self, now: &str) -> Option<HostRecord> {
        let p = self.result.as_ref().ok()?;
        Some(HostRecord {
            host_key: p.fingerprint.clone(),
            facts: Some(p.facts.clone()),
            probed_at: now.to_string(),
        })
    }

    /// The plain data the planner reads, for a state of `lineage`: a host claimed by another
    /// state, unreachable or with a changed key is no offer.
    pub fn probe(&self, lineage: &str) -> HostProbe {
        match &self.result {
            Err(e) => HostProbe {
                availability: HostAvailability::Unreachable(e.to_string()),
                facts: None,
            },
            Ok(p) => {
                let availability = match (&p.claim, &p.claim_unreadable) {
                    (Some(c), _) if c.lineage != lineage => HostAvailability::ClaimedBy {
                        lineage: c.lineage.clone(),
                        address: c.address.clone(),
                    },
                    (None, Some(why)) => HostAvailability::Unreachable(format!(
                        "its claim file is not flotilla's ({why}); remove it on the host if the host is free"
                    )),
                    _ => HostAvailability::Available,
                };
                HostProbe {
                    availability,
                    facts: Some(p.facts.clone()),
                }
            }
        }
    }
}

impl BaremetalProvider {
    /// A provider for the declared hosts, sharing the process-wide [`KnownHosts`].
    pub fn new(config: &BaremetalConfig) -> BaremetalProvider {
        BaremetalProvider {
            hosts: config.hosts.clone(),
            known: KnownHosts::global(),
            output: None,
        }
    }

    /// Uses `known` instead of the process-wide host keys.
    #[must_use]
    pub fn with_known_hosts(mut self, known: KnownHosts) -> BaremetalProvider {
        self.known = known;
        self
    }

    /// Sends `setup` commands' output to `sink`.
    #[must_use]
    pub fn with_output(mut self, sink: OutputSink) -> BaremetalProvider {
        self.output = Some(sink);
        self
    }

    /// The host keys this provider checks against.
    pub fn known_hosts(&self) -> &KnownHosts {
        &self.known
    }

    /// Trusts the host keys recorded in `state`: its per-host records first, then the
    /// `host_key` of each bare-metal node (older states kept keys only there).
    pub fn trust_state(&self, state: &State) {
        for (host, record) in &state.hosts {
            self.known.remember(host, &record.host_key);
        }
        for r in &state.resources {
            remember_key(&self.known, r);
        }
    }

    /// Probes every declared host at once: facts, claim, host key.
    pub async fn probe_hosts(&self) -> Vec<HostReport> {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, host) in self.hosts.iter().enumerate() {
            let target = target(host);
            let known = self.known.clone();
            tasks.spawn(async move { (i, probe_target(&target, &known).await) });
        }
        let mut results: Vec<Option<HostReport>> = vec![None; self.hosts.len()];
        while let Some(joined) = tasks.join_next().await {
            if let Ok((i, result)) = joined
                && let Some(host) = self.hosts.get(i)
            {
                results[i] = Some(HostReport {
                    host: host.name.clone(),
                    endpoint: target(host).endpoint(),
                    result,
                });
            }
        }
        results.into_iter().flatten().collect()
    }

    fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    fn say(&self, line: &str) {
        if let Some(sink) = &self.output {
            sink(line);
        }
    }

    /// Claims `host` for `owner` (adopting a claim that is already the owner's), runs setup,
    /// probes it, and returns the node.
    async fn claim(
        &self,
        host: &Host,
        owner: &Ownership,
        offer: &Offer,
    ) -> Result<Resource, ProviderError> {
        let session = Session::connect(&target(host), &self.known)
            .await
            .map_err(|e| ssh_failure(&e))?;
        let wanted = Claim {
            lineage: owner.lineage.clone(),
            address: owner.address.clone(),
            claimed_at: flotilla_core::state::rfc3339_now(),
            setup_done: host.setup.is_empty(),
        };
        let out = session
            .exec(&claim::claim_script(&wanted))
            .await
            .map_err(|e| ssh_failure(&e))?;
        let mut lines = out.stdout.lines();
        let claim = match lines.next().map(str::trim) {
            Some("claimed") => wanted,
            Some("held") => {
                let text: String = lines.collect::<Vec<_>>().join("\n");
                match serde_json::from_str::<Claim>(text.trim()) {
                    Ok(c) if c.is(&owner.lineage, &owner.address) => c,
                    Ok(c) => {
                        session.close().await;
                        return Err(claimed_by(&host.name, &c));
                    }
                    Err(_) => {
                        session.close().await;
                        return Err(ProviderError::new(
                            FailureKind::Capacity,
                            "HostClaimed",
                            format!(
                                "host `{}` has a claim file flotilla cannot read; it is left alone",
                                host.name
                            ),
                        ));
                    }
                }
            }
            _ => {
                session.close().await;
                return Err(ProviderError::new(
                    FailureKind::Other,
                    "ClaimFailed",
                    format!(
                        "host `{}`: cannot write the claim file (exit status {}): {}",
                        host.name,
                        status_text(out.status),
                        out.stderr.trim()
                    ),
                ));
            }
        };
        let claim = self.setup(&session, host, claim).await?;
        let probed = session
            .exec(&probe::script())
            .await
            .map_err(|e| ssh_failure(&e))?;
        let facts = probe::parse(&probed.stdout).facts;
        let resource = node(host, &session.fingerprint, &claim, &facts, offer);
        session.close().await;
        Ok(resource)
    }

    /// Runs the host's setup commands once (unless the claim says they finished), then marks
    /// the claim. A failing command releases the claim and fails the node with its status.
    async fn setup(
        &self,
        session: &Session,
        host: &Host,
        claim: Claim,
    ) -> Result<Claim, ProviderError> {
        if claim.setup_done || host.setup.is_empty() {
            return Ok(claim);
        }
        for command in &host.setup {
            self.say(&format!("host `{}` setup: $ {command}", host.name));
            let out = session.exec(command).await.map_err(|e| ssh_failure(&e))?;
            for line in out.stdout.lines().chain(out.stderr.lines()) {
                self.say(&format!("host `{}` setup: {line}", host.name));
            }
            if !out.success() {
                let _ = session
                    .exec(&claim::release_script(&claim.lineage, &claim.address))
                    .await;
                let tail: Vec<&str> = out.stderr.lines().rev().take(5).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                return Err(ProviderError::new(
                    FailureKind::Other,
                    "SetupFailed",
                    format!(
                        "host `{}`: setup command `{command}` exited with status {}{}; the claim was released",
                        host.name,
                        status_text(out.status),
                        if tail.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", tail.join(" / "))
                        }
                    ),
                ));
            }
        }
        let done = Claim {
            setup_done: true,
            ..claim
        };
        let out = session
            .exec(&claim::rewrite_script(&done))
            .await
            .map_err(|e| ssh_failure(&e))?;
        if !out.success() {
            return Err(ProviderError::new(
                FailureKind::Other,
                "ClaimFailed",
                format!(
                    "host `{}`: cannot update the claim file after setup: {}",
                    host.name,
                    out.stderr.trim()
                ),
            ));
        }
        Ok(done)
    }

    /// The target for a node in state: its declared host, else the address it recorded.
    fn target_of(&self, instance: &Resource) -> Target {
        if let Some(h) = self.host(&instance.provider_id) {
            return target(h);
        }
        let attr = |k: &str| {
            instance
                .attributes
                .get(k)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        Target {
            name: instance.provider_id.clone(),
            address: attr("address").unwrap_or_else(|| instance.provider_id.clone()),
            port: instance
                .attributes
                .get("port")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(22),
            user: attr("user").unwrap_or_else(default_user),
            identity_file: None,
            jump: None,
        }
    }
}

/// `user`, else `$USER`, else `root`.
fn default_user() -> String {
    std::env::var("USER").unwrap_or_else(|_| "root".to_string())
}

/// How to reach a declared host.
pub fn target(host: &Host) -> Target {
    let user = host.user.clone().unwrap_or_else(default_user);
    let identity = host.identity_file.as_deref().map(ssh::expand_home);
    Target {
        name: host.name.clone(),
        address: host.address.clone(),
        port: host.port,
        user: user.clone(),
        identity_file: identity.clone(),
        jump: host
            .proxy_jump
            .as_deref()
            .map(|j| Box::new(ssh::parse_jump(j, &user, identity.as_deref()))),
    }
}

fn remember_key(known: &KnownHosts, r: &Resource) {
    if r.provider == ProviderKind::Baremetal
        && let Some(key) = r.attributes.get("host_key").and_then(Value::as_str)
    {
        known.remember(&r.provider_id, key);
    }
}

/// How long the probe script may run: a wedged GPU driver can hang `nvidia-smi` forever.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

async fn probe_target(target: &Target, known: &KnownHosts) -> Result<Probed, SshError> {
    let session = Session::connect(target, known).await?;
    let out = tokio::time::timeout(PROBE_TIMEOUT, session.exec(&probe::script()))
        .await
        .map_err(|_| SshError::Unreachable {
            host: target.name.clone(),
            target: target.endpoint(),
            reason: format!(
                "the probe (uname, nproc, df, nvidia-smi) did not finish within {}s",
                PROBE_TIMEOUT.as_secs()
            ),
        })??;
    let parsed = probe::parse(&out.stdout);
    let probed = Probed {
        facts: parsed.facts,
        claim: parsed.claim,
        claim_unreadable: parsed.claim_unreadable,
        fingerprint: session.fingerprint.clone(),
        first_contact: session.first_contact,
    };
    session.close().await;
    Ok(probed)
}

/// An SSH failure as the executor sees it: an unreachable host is out of capacity (the next
/// offer is tried); a changed host key or a refused login stops the node.
fn ssh_failure(e: &SshError) -> ProviderError {
    let (kind, code) = match e {
        SshError::Unreachable { .. } => (FailureKind::Capacity, "HostUnreachable"),
        SshError::HostKeyChanged { .. } => (FailureKind::Other, "HostKeyChanged"),
        SshError::Auth { .. } => (FailureKind::Other, "AuthFailed"),
        SshError::Key { .. } => (FailureKind::Other, "IdentityFile"),
        SshError::Session { .. } => (FailureKind::Other, "SshSession"),
    };
    ProviderError::new(kind, code, e.to_string())
}

fn claimed_by(host: &str, c: &Claim) -> ProviderError {
    ProviderError::new(
        FailureKind::Capacity,
        "HostClaimed",
        format!(
            "host `{host}` is claimed by another state (lineage {}, node {})",
            c.lineage, c.address
        ),
    )
}

fn status_text(status: Option<u32>) -> String {
    status.map_or_else(
        || "none (killed by a signal)".to_string(),
        |s| s.to_string(),
    )
}

/// The node as state records it.
fn node(
    host: &Host,
    fingerprint: &str,
    claim: &Claim,
    facts: &HostFacts,
    offer: &Offer,
) -> Resource {
    let mut offer = offer.clone();
    if facts.vcpus > 0 {
        offer.vcpus = facts.vcpus;
        offer.memory = facts.memory;
    }
    let mut attributes = BTreeMap::new();
    attributes.insert("host".to_string(), json!(host.name));
    attributes.insert("address".to_string(), json!(host.address));
    attributes.insert("private_ip".to_string(), json!(host.address));
    attributes.insert("port".to_string(), json!(host.port));
    attributes.insert(
        "user".to_string(),
        json!(host.user.clone().unwrap_or_else(default_user)),
    );
    attributes.insert("host_key".to_string(), json!(fingerprint));
    attributes.insert("claim_lineage".to_string(), json!(claim.lineage));
    attributes.insert("claimed_at".to_string(), json!(claim.claimed_at));
    attributes.insert(
        "facts".to_string(),
        serde_json::to_value(facts).unwrap_or(Value::Null),
    );
    if !host.labels.is_empty() {
        attributes.insert("labels".to_string(), json!(host.labels));
    }
    Resource {
        address: claim.address.clone(),
        kind: ResourceKind::Instance,
        provider: ProviderKind::Baremetal,
        provider_id: host.name.clone(),
        region: REGION.to_string(),
        zone: String::new(),
        offer: Some(offer),
        attributes,
        dependencies: Vec::new(),
    }
}

fn unsupported(what: &str) -> ProviderError {
    ProviderError::new(
        FailureKind::Other,
        "NotSupported",
        format!(
            "{what} are not supported on bare-metal hosts; put them on a cloud provider (`provider = \"aws\"`)"
        ),
    )
}

/// Methods of [`Provider`] for what hosts do not have (volumes, gateways), each refused with
/// [`unsupported`]: `refuse!("what": method(arg: Type, ...) -> Output; ...)`.
macro_rules! refuse {
    ($what:literal: $($method:ident($($arg:ident: $ty:ty),*) -> $out:ty;)*) => {
        $(
            fn $method<'a>(
                &'a self,
                $($arg: &'a $ty),*
            ) -> BoxFuture<'a, Result<$out, ProviderError>> {
                Box::pin(async { Err(unsupported($what)) })
            }
        )*
    };
}

impl Provider for BaremetalProvider {
    fn kind(&self) -> ProviderKind {
        KIND
    }

    fn create_instance<'a>(
        &'a self,
        request: &'a InstanceRequest,
    ) -> BoxFuture<'a, Result<Resource, ProviderError>> {
        Box::pin(async move {
            let Some(host) = self.host(&request.offer.instance_type) else {
                return Err(ProviderError::new(
                    FailureKind::Other,
                    "UnknownHost",
                    format!(
                        "host `{}` is not declared in provider \"baremetal\"",
                        request.offer.instance_type
                    ),
                ));
            };
            self.claim(host, &request.owner, &request.offer).await
        })
    }

    fn update_instance<'a>(
        &'a self,
        instance: &'a Resource,
        _request: &'a InstanceRequest,
    ) -> BoxFuture<'a, Result<Resource, ProviderError>> {
        // Tags live in state only: a host has nothing to tag.
        Box::pin(async move { Ok(instance.clone()) })
    }

    fn delete_instance<'a>(
        &'a self,
        instance: &'a Resource,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            remember_key(&self.known, instance);
            let target = self.target_of(instance);
            let lineage = instance
                .attributes
                .get("claim_lineage")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let session = Session::connect(&target, &self.known).await.map_err(|e| {
                let mut err = ssh_failure(&e);
                // Not reaching the host is no reason to try another: the claim stays.
                err.kind = FailureKind::Other;
                err.message = format!(
                    "{}; the claim on host `{}` could not be released",
                    err.message, target.name
                );
                err
            })?;
            let out = session
                .exec(&claim::release_script(&lineage, &instance.address))
                .await
                .map_err(|e| ssh_failure(&e))?;
            session.close().await;
            match out.stdout.lines().next().map(str::trim) {
                Some("released") => Ok(()),
                Some("absent") => Err(ProviderError::new(
                    FailureKind::NotFound,
                    "NoClaim",
                    format!("host `{}` holds no claim", target.name),
                )),
                Some("held") => Err(ProviderError::new(
                    FailureKind::NotFound,
                    "HostClaimed",
                    format!(
                        "host `{}` is claimed by someone else now; its claim is left alone",
                        target.name
                    ),
                )),
                _ => Err(ProviderError::new(
                    FailureKind::Other,
                    "ReleaseFailed",
                    format!(
                        "host `{}`: cannot remove the claim file (exit status {}): {}",
                        target.name,
                        status_text(out.status),
                        out.stderr.trim()
                    ),
                )),
            }
        })
    }

    refuse!("volumes":
        create_volume(_request: VolumeRequest) -> Resource;
        update_volume(_volume: Resource, _request: VolumeRequest) -> Resource;
        delete_volume(_volume: Resource) -> ();
    );
    refuse!("gateways":
        create_gateway(_request: GatewayRequest) -> Resource;
        update_gateway(_gateway: Resource, _request: GatewayRequest) -> Resource;
        delete_gateway(_gateway: Resource) -> ();
    );

    fn find<'a>(
        &'a self,
        kind: ResourceKind,
        _region: &'a str,
        owner: &'a Ownership,
    ) -> BoxFuture<'a, Result<Option<Resource>, ProviderError>> {
        Box::pin(async move {
            if kind != ResourceKind::Instance {
                return Ok(None);
            }
            // Every host is looked at: the dead apply may have claimed any of them.
            for report in self.probe_hosts().await {
                let Ok(p) = &report.result else { continue };
                let Some(c) = &p.claim else { continue };
                if !c.is(&owner.lineage, &owner.address) {
                    continue;
                }
                let Some(host) = self.host(&report.host) else {
                    continue;
                };
                // Claimed but not set up: the dead apply stopped in between; finish it.
                let mut offer = host.offer();
                offer.gpu_vendor = p.facts.gpu_vendor;
                offer.gpu_name.clone_from(&p.facts.gpu_name);
                offer.gpu_count = p.facts.gpu_count;
                offer.gpu_memory = p.facts.gpu_memory;
                return self.claim(host, owner, &offer).await.map(Some);
            }
            Ok(None)
        })
    }

    fn refresh<'a>(
        &'a self,
        resources: &'a [Resource],
    ) -> BoxFuture<'a, Result<Vec<Observed>, ProviderError>> {
        Box::pin(async move {
            for r in resources {
                remember_key(&self.known, r);
            }
            // One SSH session per host, however many resources sit on it.
            let mut by_host: BTreeMap<String, Target> = BTreeMap::new();
            for r in resources {
                by_host
                    .entry(r.provider_id.clone())
                    .or_insert_with(|| self.target_of(r));
            }
            let mut tasks = tokio::task::JoinSet::new();
            for (name, target) in by_host {
                let known = self.known.clone();
                tasks.spawn(async move { (name, probe_target(&target, &known).await) });
            }
            let mut found: BTreeMap<String, Result<Probed, SshError>> = BTreeMap::new();
            while let Some(joined) = tasks.join_next().await {
                if let Ok((name, result)) = joined {
                    found.insert(name, result);
                }
            }
            let mut out = Vec::with_capacity(resources.len());
            for r in resources {
                match found.get(&r.provider_id) {
                    Some(Err(e @ SshError::HostKeyChanged { .. })) => return Err(ssh_failure(e)),
                    // Unreachable now says nothing about whether the node is still there.
                    None | Some(Err(_)) => out.push(Observed::Exists(r.clone())),
                    Some(Ok(p)) => {
                        let lineage = r
                            .attributes
                            .get("claim_lineage")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        match &p.claim {
                            Some(c) if c.is(lineage, &r.address) => {
                                let mut now = r.clone();
                                // Free disk space moves all the time; only a change of
                                // hardware is worth reporting as a change.
                                let before: Option<HostFacts> = r
                                    .attributes
                                    .get("facts")
                                    .and_then(|f| serde_json::from_value(f.clone()).ok());
                                let same_hardware = before.is_some_and(|b| {
                                    HostFacts {
                                        disk_free: p.facts.disk_free,
                                        ..b
                                    } == p.facts
                                });
                                if !same_hardware {
                                    now.attributes.insert(
                                        "facts".to_string(),
                                        serde_json::to_value(&p.facts).unwrap_or(Value::Null),
                                    );
                                }
                                out.push(Observed::Exists(now));
                            }
                            _ => out.push(Observed::Gone),
                        }
                    }
                }
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(result: Result<Probed, SshError>) -> HostReport {
        HostReport {
            host: "dgx".to_string(),
            endpoint: "10.0.0.1:22".to_string(),
            result,
        }
    }

    fn probed(claim: Option<Claim>) -> Probed {
        Probed {
            facts: HostFacts::default(),
            claim,
            claim_unreadable: None,
            fingerprint: "SHA256:x".to_string(),
            first_contact: false,
        }
    }

    fn claim(lineage: &str) -> Claim {
        Claim {
            lineage: lineage.to_string(),
            address: "fleet.a[0]".to_string(),
            claimed_at: String::new(),
            setup_done: true,
        }
    }

    #[test]
    fn only_free_hosts_and_our_own_claims_are_offers() {
        let free = report(Ok(probed(None))).probe("mine");
        assert_eq!(free.availability, HostAvailability::Available);
        assert!(free.facts.is_some());
        let ours = report(Ok(probed(Some(claim("mine"))))).probe("mine");
        assert_eq!(ours.availability, HostAvailability::Available);
        let theirs = report(Ok(probed(Some(claim("theirs"))))).probe("mine");
        assert_eq!(
            theirs.availability,
            HostAvailability::ClaimedBy {
                lineage: "theirs".to_string(),
                address: "fleet.a[0]".to_string()
            }
        );
        let down = report(Err(SshError::Unreachable {
            host: "dgx".to_string(),
            target: "10.0.0.1:22".to_string(),
            reason: "refused".to_string(),
        }))
        .probe("mine");
        assert!(!down.availability.is_offer());
        assert!(down.facts.is_none());
    }

    #[test]
    fn unreachable_hosts_fail_over_and_changed_keys_stop() {
        let down = ssh_failure(&SshError::Unreachable {
            host: "dgx".to_string(),
            target: "10.0.0.1:22".to_string(),
            reason: "refused".to_string(),
        });
        assert_eq!(down.kind, FailureKind::Capacity);
        let changed = ssh_failure(&SshError::HostKeyChanged {
            host: "dgx".to_string(),
            expected: "SHA256:a".to_string(),
            got: "SHA256:b".to_string(),
        });
        assert_eq!(changed.kind, FailureKind::Other);
        assert!(changed.message.contains("SHA256:a") && changed.message.contains("SHA256:b"));
    }

    #[test]
    fn the_plan_notes_new_keys_and_hosts_not_offered() {
        let mut first = probed(None);
        first.first_contact = true;
        let note = report(Ok(first)).note("mine").expect("a new key is noted");
        assert_eq!(
            (note.kind, note.detail.as_str()),
            (HostNoteKind::NewKey, "SHA256:x")
        );
        assert!(note.message().starts_with("new host key for dgx: SHA256:x"));
        assert_eq!(report(Ok(probed(None))).note("mine"), None);
        let theirs = report(Ok(probed(Some(claim("theirs")))))
            .note("mine")
            .expect("a claimed host is noted");
        assert_eq!(theirs.kind, HostNoteKind::Claimed);
        assert_eq!(
            theirs.message(),
            "dgx is claimed by state theirs (fleet.a[0]), not offered"
        );
        let down = report(Err(SshError::Unreachable {
            host: "dgx".to_string(),
            target: "10.0.0.1:22".to_string(),
            reason: "refused".to_string(),
        }));
        assert_eq!(
            down.note("mine").map(|n| n.kind),
            Some(HostNoteKind::Unreachable)
        );
        let changed = report(Err(SshError::HostKeyChanged {
            host: "dgx".to_string(),
            expected: "SHA256:a".to_string(),
            got: "SHA256:b".to_string(),
        }))
        .note("mine")
        .expect("a changed key is noted");
        assert_eq!(changed.kind, HostNoteKind::Refused);
        assert!(changed.detail.contains("SHA256:a") && changed.detail.contains("SHA256:b"));
    }

    #[test]
    fn only_reached_hosts_get_a_fresh_record() {
        let record = report(Ok(probed(None)))
            .record("2026-11-26T15:00:00Z")
            .expect("a record");
        assert_eq!(record.host_key, "SHA256:x");
        assert_eq!(record.facts, Some(HostFacts::default()));
        assert_eq!(record.probed_at, "2026-11-26T15:00:00Z");
        let down = report(Err(SshError::Unreachable {
            host: "dgx".to_string(),
            target: "10.0.0.1:22".to_string(),
            reason: "refused".to_string(),
        }));
        assert_eq!(down.record("now"), None);
    }

    #[test]
    fn recorded_host_keys_are_trusted_for_hosts_without_nodes() {
        let mut state = State::empty();
        state.hosts.insert(
            "spare".to_string(),
            HostRecord {
                host_key: "SHA256:spare".to_string(),
                facts: None,
                probed_at: String::new(),
            },
        );
        let provider = BaremetalProvider::new(&BaremetalConfig::default())
            .with_known_hosts(KnownHosts::default());
        provider.trust_state(&state);
        assert_eq!(
            provider.known_hosts().get("spare").as_deref(),
            Some("SHA256:spare")
        );
    }
}
