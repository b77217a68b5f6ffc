//! `flotilla plan`: fleet files + state + catalog -> a rendered plan, optionally saved.

use crate::args::{PlanArgs, PlanFormat, PlanInputs};
use anyhow::Context as _;
use flotilla_core::catalog::Catalog;
use flotilla_core::config::{self, Config};
use flotilla_core::plan::{self, Plan, PlanOptions, render};
use flotilla_core::state::{State, StateStore};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

// The refresh step (see `refresh`).
use flotilla_core::apply::fake::{self, FakeProvider};
use flotilla_core::catalog::ProviderKind;
use flotilla_core::plan::Refreshed;
use flotilla_core::provider::{Observed, Provider, ProviderError};
use flotilla_core::state::Resource;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The state file used when neither `--state` nor `state { url }` names one.
pub(crate) const DEFAULT_STATE_FILE: &str = "flotilla.state.json";

pub(crate) fn run(args: &PlanArgs, color: bool) -> anyhow::Result<ExitCode> {
    let made = make_plan(&args.inputs, "plan")?;
    let out = match args.format {
        PlanFormat::Text => render::text(&made.plan, color),
        PlanFormat::Json => render::json(&made.plan),
        PlanFormat::Markdown => render::markdown(&made.plan),
    };
    crate::printer::stdout(&out)?;
    if let Some(path) = &args.out {
        write_plan_file(path, &made.plan)?;
        crate::printer::info(&format!(
            "Saved the plan to {}. To carry it out exactly: flotilla apply {}",
            path.display(),
            path.display()
        ));
    }
    Ok(if args.detailed_exitcode && made.plan.has_changes() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// A plan with what it was made from.
pub(crate) struct MadePlan {
    /// The plan.
    pub(crate) plan: Plan,
    /// The configuration it was made from.
    #[allow(dead_code)]
    pub(crate) config: Config,
}

/// Loads everything a plan needs and makes it, holding the state lock while it reads.
pub(crate) fn make_plan(inputs: &PlanInputs, operation: &str) -> anyhow::Result<MadePlan> {
    let config = load_config(&inputs.config)?;
    let catalog = load_catalog(inputs.catalog.as_deref())?;
    let url = state_url(inputs, &config);
    let store = flotilla_state::open(&url)?;
    let state = read_state(store.as_ref(), operation, inputs.lock_timeout)?;
    // Bare-metal hosts: probed facts, claims and host keys (see `hosts`).
    let probed = super::hosts::probed(&config, &state, inputs.refresh)?;
    let config = probed.config;
    let options = PlanOptions {
        targets: inputs.targets.clone(),
        replace: inputs.replace.clone(),
        destroy: inputs.destroy,
    };
    let refreshed = refresh(&config, state, inputs.refresh)?;
    let mut plan = plan::plan_refreshed(&config, &refreshed, &catalog, &options)?;
    plan.hosts = probed.notes;
    Ok(MadePlan { plan, config })
}

/// Reads the fleet files with the command line's and the environment's variables.
pub(crate) fn load_config(args: &crate::args::ConfigArgs) -> anyhow::Result<Config> {
    Ok(config::load(&super::validate::load_options(args)?)?)
}

/// `--catalog FILE`, else the offers cache of `flotilla offers --refresh` merged over the
/// embedded snapshot, else the embedded snapshot.
pub(crate) fn load_catalog(path: Option<&Path>) -> anyhow::Result<Catalog> {
    match path {
        Some(p) => Ok(Catalog::from_path(p)?),
        None => super::offers::cached_catalog(),
    }
}

/// `--state`, else the fleet files' `state { url }`, else `DIR/flotilla.state.json`. A
/// relative path is relative to `-C DIR`, as the fleet files are.
pub(crate) fn state_url(inputs: &PlanInputs, config: &Config) -> String {
    if let Some(s) = &inputs.state {
        return s.clone();
    }
    let dir = &inputs.config.dir;
    match &config.state_url {
        Some(u) if u.contains("://") => u.clone(),
        Some(p) => join_dir(dir, Path::new(p)),
        None => join_dir(dir, Path::new(DEFAULT_STATE_FILE)),
    }
}

fn join_dir(dir: &Path, p: &Path) -> String {
    if p.is_absolute() || dir == Path::new(".") {
        p.display().to_string()
    } else {
        dir.join(p).display().to_string()
    }
}

/// Reads the state under the lock (a missing state is empty), then releases the lock; waits
/// up to `lock_timeout` for another holder.
pub(crate) fn read_state(
    store: &dyn StateStore,
    operation: &str,
    lock_timeout: std::time::Duration,
) -> anyhow::Result<State> {
    let rt = runtime()?;
    rt.block_on(async {
        let info = super::lock::acquire(store, operation, lock_timeout).await?;
        let read = store.read().await;
        let unlocked = store.unlock(&info.id).await;
        let state = read?.map(|(s, _)| s).unwrap_or_else(State::empty);
        unlocked?;
        Ok(state)
    })
}

/// A small single-threaded runtime for the stores' futures.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Writes a saved plan: the whole plan, which records the state lineage and serial and the
/// configuration digest it was made against.
pub(crate) fn write_plan_file(path: &Path, plan: &Plan) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(plan).context("cannot encode the plan")?;
    text.push('\n');
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    fs_err::write(&tmp, text)?;
    fs_err::rename(&tmp, path)?;
    Ok(())
}

/// Reads a saved plan, refusing anything that is not one.
pub(crate) fn read_plan_file(path: &Path) -> anyhow::Result<Plan> {
    let text = fs_err::read_to_string(path)?;
    let plan: Plan = serde_json::from_str(&text).with_context(|| {
        format!(
            "`{}` is not a flotilla plan file; make one with `flotilla plan --out {}`",
            path.display(),
            path.display()
        )
    })?;
    if plan.format_version != plan::PLAN_FORMAT_VERSION {
        anyhow::bail!(
            "plan file `{}` has format_version {}, this flotilla reads {}; make the plan again with this flotilla",
            path.display(),
            plan.format_version,
            plan::PLAN_FORMAT_VERSION
        );
    }
    Ok(plan)
}

/// The refresh step of a plan (`--refresh`, on by default): asks each provider the state
/// holds resources of, in one batched [`Provider::refresh`] per provider, what exists now,
/// and folds the answers into the state ([`plan::refresh`]). A provider is only built when
/// the state holds something of it, so a plan against an empty state makes no network call.
/// A provider this build cannot talk to yet leaves its resources as the state records them.
pub(crate) fn refresh(config: &Config, state: State, enabled: bool) -> anyhow::Result<Refreshed> {
    if !enabled || state.resources.is_empty() {
        return Ok(Refreshed::unrefreshed(state));
    }
    let mut by_kind: BTreeMap<ProviderKind, Vec<Resource>> = BTreeMap::new();
    for r in &state.resources {
        by_kind.entry(r.provider).or_default().push(r.clone());
    }
    let rt = runtime()?;
    let mut observed: BTreeMap<String, Observed> = BTreeMap::new();
    for (kind, resources) in by_kind {
        let Some(provider) = refresh_provider(config, kind)? else {
            continue;
        };
        let answers = rt
            .block_on(provider.refresh(&resources))
            .map_err(|e| refresh_failed(kind, &e))?;
        if answers.len() != resources.len() {
            anyhow::bail!(
                "refreshing `{kind}` failed: it answered for {} of {} resources; plan with --refresh=false to use the state as recorded",
                answers.len(),
                resources.len()
            );
        }
        for (r, answer) in resources.iter().zip(answers) {
            observed.insert(r.address.clone(), answer);
        }
    }
    Ok(plan::refresh(&state, &observed))
}

fn refresh_failed(kind: ProviderKind, e: &ProviderError) -> anyhow::Error {
    let chain = match kind {
        ProviderKind::Aws => "AWS profiles and environment",
        ProviderKind::Gcp => "Google application default credentials",
        ProviderKind::Azure => "Azure CLI or environment",
        ProviderKind::Baremetal => "ssh-agent and ~/.ssh/config",
    };
    anyhow::anyhow!(
        "refreshing `{kind}` failed: {e}; check its credentials ({chain}) and endpoint, or plan with --refresh=false to use the state as recorded"
    )
}

/// The provider that refreshes `kind`'s resources: the test fake when
/// `FLOTILLA_FAKE_PROVIDER_DIR` is set (as apply uses), else the real one where this build has
/// it. `None`: no implementation yet, nothing to ask.
fn refresh_provider(
    config: &Config,
    kind: ProviderKind,
) -> anyhow::Result<Option<Arc<dyn Provider>>> {
    if let Some(dir) = std::env::var_os(fake::DIR_ENV) {
        let dir = PathBuf::from(dir);
        let fake = FakeProvider::in_dir(kind, &dir)
            .with_context(|| format!("cannot use the fake provider directory {}", dir.display()))?;
        return Ok(Some(Arc::new(fake)));
    }
    Ok(match kind {
        // A state may outlive its provider block: refresh through the default chain then.
        ProviderKind::Aws => {
            let aws = config.providers.aws.clone().unwrap_or_default();
            Some(Arc::new(flotilla_provider_aws::AwsProvider::new(&aws)?))
        }
        // GCP needs the block's project; without one the state is used as recorded.
        ProviderKind::Gcp => match &config.providers.gcp {
            Some(gcp) => Some(Arc::new(flotilla_provider_gcp::GcpProvider::new(gcp)?)),
            None => None,
        },
        // Azure needs the block's subscription and resource group, like GCP its project.
        ProviderKind::Azure => match &config.providers.azure {
            Some(azure) => Some(Arc::new(flotilla_provider_azure::AzureProvider::new(
                azure,
            )?)),
            None => None,
        },
        ProviderKind::Baremetal => None,
    })
}
