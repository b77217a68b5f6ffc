//! Bare-metal hosts before a plan: probe each declared host over SSH (hardware, claim, host
//! key) and hand the planner plain data, so that a host's offer is what the machine really
//! has, and a host that is unreachable, claimed by another state or shows a changed host key
//! is no offer. What was found is printed with the plan: who holds a claimed host, why one
//! could not be reached, and which host keys were trusted on first use.
//!
//! The probing itself lives in `flotilla-provider-baremetal`; core only receives
//! [`flotilla_core::config::HostProbe`] values on the configuration's hosts.

use flotilla_core::apply::fake;
use flotilla_core::catalog::{Offer, ProviderKind};
use flotilla_core::config::{Config, HostAvailability, HostFacts, HostProbe, LoadOptions};
use flotilla_core::plan::Plan;
use flotilla_core::state::State;
use flotilla_provider_baremetal::ssh::SshError;
use flotilla_provider_baremetal::{BaremetalProvider, HostReport};
use std::path::PathBuf;

/// `config` with each bare-metal host's probe filled in (unchanged when there are no hosts,
/// when `refresh` is off, or under the test-only fake providers). Prints what it found.
pub(crate) fn probed(config: &Config, state: &State, refresh: bool) -> anyhow::Result<Config> {
    probed_for_apply(config, state, refresh, None)
}

/// Like [`probed`], for an apply of `saved`: a host the saved plan chose that is unreachable
/// now stays a candidate, on the facts the plan saw, so that the executor tries it, gets a
/// capacity error and fails over to the next offer, as it would for a cloud.
pub(crate) fn probed_for_apply(
    config: &Config,
    state: &State,
    refresh: bool,
    saved: Option<&Plan>,
) -> anyhow::Result<Config> {
    let mut config = config.clone();
    let Some(baremetal) = config.providers.baremetal.as_mut() else {
        return Ok(config);
    };
    if !refresh || std::env::var_os(fake::DIR_ENV).is_some() {
        return Ok(config);
    }
    let provider = BaremetalProvider::new(baremetal);
    provider.trust_state(state);
    let reports = super::plan::runtime()?.block_on(provider.probe_hosts());
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
    Ok(config)
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
                out.push_str(&format!(
                    "  {} ({}): {gpus}, {} vCPUs, {} memory, {} disk free, {}; {status}\n",
                    r.host, r.endpoint, f.vcpus, f.memory, f.disk_free, f.arch
                ));
                if p.first_contact {
                    out.push_str(&format!(
                        "    new host key {}: trusted on first use; recorded in state with the node placed on it\n",
                        p.fingerprint
                    ));
                }
            }
        }
    }
    out.trim_end().to_string()
}

/// For `flotilla offers`: the bare-metal hosts declared by the fleet files in the working
/// directory, as offers on their probed facts (a host that cannot be reached is left out and
/// said so on stderr; a claimed one is shown and its holder named). None when there are no
/// fleet files or no hosts.
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
    let provider = BaremetalProvider::new(baremetal);
    let Ok(rt) = super::plan::runtime() else {
        return Vec::new();
    };
    let reports = rt.block_on(provider.probe_hosts());
    let mut offers = Vec::new();
    for (host, report) in baremetal.hosts.iter().zip(&reports) {
        match &report.result {
            Err(e) => crate::printer::info(&format!("host `{}`: not offered: {e}", host.name)),
            Ok(p) => {
                if let Some(c) = &p.claim {
                    crate::printer::info(&format!(
                        "host `{}`: claimed by state {} (node {})",
                        host.name, c.lineage, c.address
                    ));
                }
                let mut h = host.clone();
                h.probe = HostProbe {
                    availability: HostAvailability::Available,
                    facts: Some(p.facts.clone()),
                };
                offers.push(h.offer());
            }
        }
    }
    offers
}
