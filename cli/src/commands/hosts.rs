//! Bare-metal hosts before a plan: probe each declared host over SSH (hardware, claim, host
//! key) and hand the planner plain data, so that a host's offer is what the machine really
//! has, and a host that is unreachable, claimed by another state or shows a changed host key
//! is no offer. Each host's facts are printed on stderr as they are found; what a reviewer must
//! see (host keys trusted on first use, who holds a claimed host, why one could not be
//! reached) goes into the plan itself as [`HostNote`]s, and what was learned of each host (its
//! key and facts) into state's per-host records, written at apply.
//!
//! The probing itself lives in `flotilla-provider-baremetal`; core only receives
//! [`flotilla_core::config::HostProbe`] values on the configuration's hosts.

use flotilla_core::apply::fake;
use flotilla_core::catalog::{Offer, ProviderKind};
use flotilla_core::config::{Config, HostAvailability, HostFacts, HostProbe, LoadOptions};
use flotilla_core::plan::{HostNote, HostNoteKind, Plan};
use flotilla_core::state::{HostRecord, State};
use flotilla_provider_baremetal::ssh::SshError;
use flotilla_provider_baremetal::{BaremetalProvider, HostReport};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What probing the hosts gave.
pub(crate) struct Probed {
    /// The configuration with each host's probe filled in.
    pub(crate) config: Config,
    /// The plan's host report ([`Plan::hosts`]).
    pub(crate) notes: Vec<HostNote>,
    /// A fresh record for each host reached, by name, for state's `hosts` (apply writes them).
    pub(crate) records: BTreeMap<String, HostRecord>,
}

impl Probed {
    /// Nothing probed: `config` as it is.
    fn unchanged(config: Config) -> Probed {
        Probed {
            config,
            notes: Vec::new(),
            records: BTreeMap::new(),
        }
    }

    /// Folds the records into `state`; whether a host's key was recorded for the first time
    /// (then the state is worth writing even when nothing else changes).
    pub(crate) fn record_into(&mut self, state: &mut State) -> bool {
        let mut new_key = false;
        for (host, record) in std::mem::take(&mut self.records) {
            new_key |= state
                .hosts
                .get(&host)
                .is_none_or(|old| old.host_key != record.host_key);
            state.hosts.insert(host, record);
        }
        new_key
    }
}

/// `config` with each bare-metal host's probe filled in (unchanged when there are no hosts,
/// when `refresh` is off, or under the test-only fake providers), the plan's host report,
/// and the records to keep. Prints each host's facts on stderr.
pub(crate) fn probed(config: &Config, state: &State, refresh: bool) -> anyhow::Result<Probed> {
    probed_for_apply(config, state, refresh, None)
}

/// Like [`probed`], for an apply of `saved`: a host the saved plan chose that is unreachable
/// now stays a candidate, on the facts the plan saw, so that the executor tries it, gets a
/// capacity error and fails over to the next offer, as it would for a cloud. A host key the
/// saved plan showed as new is the one trusted: a different key now is refused.
pub(crate) fn probed_for_apply(
    config: &Config,
    state: &State,
    refresh: bool,
    saved: Option<&Plan>,
) -> anyhow::Result<Probed> {
    let mut config = config.clone();
    let Some(baremetal) = config.providers.baremetal.as_mut() else {
        return Ok(Probed::unchanged(config));
    };
    if !refresh || std::env::var_os(fake::DIR_ENV).is_some() {
        return Ok(Probed::unchanged(config));
    }
    let provider = BaremetalProvider::new(baremetal);
    provider.trust_state(state);
    for note in saved.iter().flat_map(|p| &p.hosts) {
        if note.kind == HostNoteKind::NewKey {
            provider.known_hosts().remember(&note.host, &note.detail);
        }
    }
    let reports = super::plan::runtime()?.block_on(provider.probe_hosts());
    let now = flotilla_core::state::rfc3339_now();
    let notes = reports
        .iter()
        .filter_map(|r| r.note(&state.lineage))
        .collect();
    let records = reports
        .iter()
        .filter_map(|r| Some((r.host.clone(), r.record(&now)?)))
        .collect();
    for (host, report) in baremetal.hosts.iter_mut().zip(&reports) {
        host.probe = report.probe(&state.lineage);
        if let (Err(SshError::Unreachable { .. }), Some(plan)) = (&report.result, saved)
            && let Some(offer) = plan
                .offers
                .iter()
                .filter_map(|f| f.top.first())
                .find(|o| o.provider == ProviderKind::Baremetal && o.instance_type == host.name)
        {
            host.probe = HostProbe {
                availability: HostAvailability::Unknown,
                facts: Some(HostFacts {
                    gpu_vendor: offer.gpu_vendor,
                    gpu_name: offer.gpu_name.clone(),
                    gpu_count: offer.gpu_count,
                    gpu_memory: offer.gpu_memory,
                    vcpus: offer.vcpus,
                    memory: offer.memory,
                    ..HostFacts::default()
                }),
            };
        }
    }
    crate::printer::info(&report_text(&reports, state));
    Ok(Probed {
        config,
        notes,
        records,
    })
}

/// The hosts section printed before a plan.
fn report_text(reports: &[HostReport], state: &State) -> String {
    let mut out = String::from("Bare-metal hosts:\n");
    for r in reports {
        let probe = r.probe(&state.lineage);
        match &r.result {
            Err(e) => {
                out.push_str(&format!(
                    "  {} ({}): not offered: {e}\n",
                    r.host, r.endpoint
                ));
            }
            Ok(p) => {
                let f = &p.facts;
                let gpus = if f.gpu_count == 0 {
                    "no GPUs".to_string()
                } else {
                    format!("{}x {} {}", f.gpu_count, f.gpu_name, f.gpu_memory)
                };
                let status = match (&probe.availability, &p.claim) {
                    (HostAvailability::ClaimedBy { lineage, address }, _) => format!(
                        "claimed by another state (lineage {lineage}, node {address}): not offered"
                    ),
                    (HostAvailability::Unreachable(why), _) => format!("not offered: {why}"),
                    (_, Some(c)) => format!("held by this state's {}", c.address),
                    (_, None) => "free".to_string(),
                };
                // A new host key is in the plan's own host report, not here.
                out.push_str(&format!(
                    "  {} ({}): {gpus}, {} vCPUs, {} memory, {} disk free, {}; {status}\n",
                    r.host, r.endpoint, f.vcpus, f.memory, f.disk_free, f.arch
                ));
            }
        }
    }
    out.trim_end().to_string()
}

/// For `flotilla offers`: the bare-metal hosts declared by the fleet files in the working
/// directory, as offers on their probed facts. A host that cannot be reached is shown on the
/// facts its state last recorded, saying they are cached and when (left out, and said so on
/// stderr, when there are none); a claimed one is shown and its holder named. Empty when
/// there are no fleet files or no hosts.
pub(crate) fn offers_here() -> Vec<Offer> {
    let options = LoadOptions {
        dir: PathBuf::from("."),
        ..LoadOptions::default()
    };
    let Ok(config) = flotilla_core::config::load(&options) else {
        return Vec::new();
    };
    let Some(baremetal) = &config.providers.baremetal else {
        return Vec::new();
    };
    if std::env::var_os(fake::DIR_ENV).is_some() {
        return Vec::new();
    }
    let Ok(rt) = super::plan::runtime() else {
        return Vec::new();
    };
    let state = state_here(&config, &rt);
    let provider = BaremetalProvider::new(baremetal);
    if let Some(state) = &state {
        provider.trust_state(state);
    }
    let reports = rt.block_on(provider.probe_hosts());
    let mut offers = Vec::new();
    for (host, report) in baremetal.hosts.iter().zip(&reports) {
        let facts = match &report.result {
            Err(e @ SshError::Unreachable { .. }) => {
                let cached = state
                    .as_ref()
                    .and_then(|s| s.hosts.get(&host.name))
                    .and_then(|r| Some((r.facts.clone()?, r.probed_at.clone())));
                let Some((facts, at)) = cached else {
                    crate::printer::info(&format!(
                        "host `{}`: not offered: {e}; no facts of it are cached in state",
                        host.name
                    ));
                    continue;
                };
                crate::printer::info(&format!(
                    "host `{}`: {e}; shown on its facts cached in state at {at}",
                    host.name
                ));
                facts
            }
            Err(e) => {
                crate::printer::info(&format!("host `{}`: not offered: {e}", host.name));
                continue;
            }
            Ok(p) => {
                if let Some(c) = &p.claim {
                    crate::printer::info(&format!(
                        "host `{}`: claimed by state {} (node {})",
                        host.name, c.lineage, c.address
                    ));
                }
                p.facts.clone()
            }
        };
        let mut h = host.clone();
        h.probe = HostProbe {
            availability: HostAvailability::Available,
            facts: Some(facts),
        };
        offers.push(h.offer());
    }
    offers
}

/// The state the fleet files here name (`state { url }`, else `./flotilla.state.json`), read
/// without the lock: `offers` only shows what it holds. `None` when there is none or it
/// cannot be read (the offers are then shown without cached facts).
fn state_here(config: &Config, rt: &tokio::runtime::Runtime) -> Option<State> {
    let url = config
        .state_url
        .clone()
        .unwrap_or_else(|| super::plan::DEFAULT_STATE_FILE.to_string());
    let store = flotilla_state::open(&url).ok()?;
    rt.block_on(store.read()).ok().flatten().map(|(s, _)| s)
}
