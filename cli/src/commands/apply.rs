//! `flotilla apply [PLANFILE]` and `flotilla destroy`: make (or read) a plan, confirm it, and
//! carry it out through the executor, with progress on stderr and the outcome at the end.
//!
//! The state lock is held from the first read to the last write, so that no other apply, and
//! no plan, can read a state this one is about to change. A saved plan is applied exactly, or
//! not at all: it is refused, before anything changes, when the state moved on since it was
//! made (lineage or serial) or the configuration changed (its digest).
//!
//! Providers are built in one place, [`build_providers`]. Test-only: when
//! `FLOTILLA_FAKE_PROVIDER_DIR` is set, every provider is the in-process fake of
//! `flotilla_core::apply::fake`, which keeps its resources as files in that directory, so the
//! CLI tests can apply end to end without a cloud.

use crate::args::{ApplyArgs, DestroyArgs, PlanInputs, RunArgs};
use anyhow::{Context as _, bail};
use flotilla_core::apply::fake::{self, FakeProvider};
use flotilla_core::apply::{
    ApplyContext, ApplyOptions, ApplyReport, CancelToken, Event, EventSink, Fleets, OpStatus,
    apply, offer_label,
};
use flotilla_core::catalog::ProviderKind;
use flotilla_core::config::Config;
use flotilla_core::plan::graph::{Operation, Step};
use flotilla_core::plan::{self, Action, Plan, PlanOptions, render};
use flotilla_core::provider::Provider;
use flotilla_core::state::{State, StateStore};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::plan::{load_catalog, load_config, read_plan_file, state_url};

/// The exit code of an apply stopped by Ctrl-C, as shells report a SIGINT death.
const EXIT_INTERRUPTED: u8 = 130;

pub(crate) fn run(args: &ApplyArgs, color: bool) -> anyhow::Result<ExitCode> {
    execute(
        &args.inputs,
        args.plan.as_deref(),
        &args.run,
        color,
        "apply",
    )
}

pub(crate) fn run_destroy(args: &DestroyArgs, color: bool) -> anyhow::Result<ExitCode> {
    let mut inputs = args.inputs.clone();
    inputs.destroy = true;
    execute(&inputs, None, &args.run, color, "destroy")
}

fn execute(
    inputs: &PlanInputs,
    planfile: Option<&Path>,
    run: &RunArgs,
    color: bool,
    operation: &str,
) -> anyhow::Result<ExitCode> {
    if planfile.is_some()
        && (!inputs.targets.is_empty() || !inputs.replace.is_empty() || inputs.destroy)
    {
        bail!(
            "--target, --replace and --destroy shape a new plan and cannot be used with a saved one; \
             make the plan with them (`flotilla plan --out FILE …`) and apply that file"
        );
    }
    let saved = match planfile {
        Some(p) => Some((p, read_plan_file(p)?)),
        None => None,
    };
    let config = load_config(&inputs.config)?;
    let catalog = load_catalog(inputs.catalog.as_deref())?;
    if let Some((_, plan)) = &saved
        && plan.config_digest != config.digest()
    {
        bail!("the configuration changed since the plan was made; run flotilla plan again");
    }
    let providers = build_providers(&config)?;
    let url = state_url(inputs, &config);
    let store: Arc<dyn StateStore> = Arc::from(flotilla_state::open(&url)?);
    // Multi-threaded, so that the lock's heartbeat goes on while the prompt waits for "yes".
    let rt = super::lock::runtime()?;
    let lock = rt.block_on(super::lock::acquire(
        store.as_ref(),
        operation,
        inputs.lock_timeout,
    ))?;
    let heartbeat = super::lock::Heartbeat::start(&rt, store.clone(), &lock);
    let result = (|| {
        let read = rt.block_on(store.read())?;
        let (mut state, version) = match read {
            Some((s, v)) => (s, Some(v)),
            None => (State::empty(), None),
        };
        // Bare-metal hosts: probed facts, claims and host keys, for the plan and failover.
        let mut probed = super::hosts::probed_for_apply(
            &config,
            &state,
            inputs.refresh,
            saved.as_ref().map(|(_, p)| p),
        )?;
        // Host keys and facts go into state with the apply's first write.
        let new_host_key = probed.record_into(&mut state);
        let config = probed.config;
        let plan = match saved {
            Some((path, plan)) => {
                // A plan made before the first apply names the lineage it will create.
                if version.is_none() && plan.state.serial == 0 {
                    state.lineage = plan.state.lineage.clone();
                }
                if plan.state.lineage != state.lineage || plan.state.serial != state.serial {
                    bail!(
                        "the saved plan `{}` is stale: it was made against state serial {} (lineage {}), and the state is now at serial {} (lineage {}); nothing was changed. Run flotilla plan again",
                        path.display(),
                        plan.state.serial,
                        plan.state.lineage,
                        state.serial,
                        state.lineage
                    );
                }
                // What the plan's refresh found deleted is gone from the state it applies to.
                plan::forget_gone(&mut state, &plan.drift);
                plan
            }
            None => {
                let options = PlanOptions {
                    targets: inputs.targets.clone(),
                    replace: inputs.replace.clone(),
                    destroy: inputs.destroy,
                };
                // Apply carries out, and records, the plan made against the refreshed state.
                let refreshed = super::plan::refresh(&config, state, inputs.refresh)?;
                state = refreshed.state.clone();
                let mut plan = plan::plan_refreshed(&config, &refreshed, &catalog, &options)?;
                plan.hosts = probed.notes;
                crate::printer::stdout(&render::text(&plan, color))?;
                if !plan.has_changes() {
                    // Nothing to do, but a host key seen for the first time is kept, so it is
                    // not trusted anew next time.
                    if new_host_key {
                        state.serial += 1;
                        rt.block_on(store.write(&state, version.as_ref()))?;
                    }
                    // As Terraform does, a no-op apply still shows the outputs.
                    if !plan.destroy {
                        print_outputs(&state.outputs)?;
                    }
                    return Ok(ExitCode::SUCCESS);
                }
                if !run.auto_approve && !confirm(operation)? {
                    crate::printer::info(&format!(
                        "{} cancelled: nothing was changed.",
                        title(operation)
                    ));
                    return Ok(ExitCode::from(1));
                }
                plan
            }
        };
        check_providers(&plan, &providers)?;
        let report = carry_out(
            &rt,
            &plan,
            &config,
            &catalog,
            providers,
            store.clone(),
            state,
            version,
            run,
        );
        let code = finish(&report, plan.destroy);
        if report.is_success() && !plan.destroy {
            print_outputs(&report.state.outputs)?;
        }
        Ok(code)
    })();
    drop(heartbeat);
    let unlocked = rt.block_on(store.unlock(&lock.id));
    let code = result?;
    unlocked?;
    Ok(code)
}

fn title(operation: &str) -> &'static str {
    if operation == "destroy" {
        "Destroy"
    } else {
        "Apply"
    }
}

/// Asks on the terminal; only `yes` goes ahead.
fn confirm(operation: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("no terminal to confirm on; pass -y/--auto-approve to {operation} without asking");
    }
    let mut err = std::io::stderr().lock();
    write!(
        err,
        "\nDo you want to perform these actions? Only 'yes' will be accepted: "
    )?;
    err.flush()?;
    drop(err);
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim() == "yes")
}

/// The providers this build can apply with, by kind. Each provider crate plugs in here (the
/// AWS provider's constructor goes in the `Aws` arm); a kind with no implementation is left
/// out, and [`check_providers`] refuses a plan that needs it before anything changes.
pub(crate) fn build_providers(
    config: &Config,
) -> anyhow::Result<BTreeMap<ProviderKind, Arc<dyn Provider>>> {
    let mut providers: BTreeMap<ProviderKind, Arc<dyn Provider>> = BTreeMap::new();
    if let Some(dir) = std::env::var_os(fake::DIR_ENV) {
        let dir = PathBuf::from(dir);
        for kind in ProviderKind::ALL {
            let fake = FakeProvider::in_dir(kind, &dir).with_context(|| {
                format!("cannot use the fake provider directory {}", dir.display())
            })?;
            providers.insert(kind, Arc::new(fake));
        }
        return Ok(providers);
    }
    for kind in config.providers.configured() {
        let provider: Option<Arc<dyn Provider>> = match kind {
            ProviderKind::Aws => match &config.providers.aws {
                Some(aws) => Some(Arc::new(flotilla_provider_aws::AwsProvider::new(aws)?)),
                None => None,
            },
            ProviderKind::Baremetal => config.providers.baremetal.as_ref().map(|b| {
                let sink: flotilla_provider_baremetal::OutputSink =
                    Arc::new(|line: &str| crate::printer::info(line));
                Arc::new(flotilla_provider_baremetal::BaremetalProvider::new(b).with_output(sink))
                    as Arc<dyn Provider>
            }),
            ProviderKind::Gcp => match &config.providers.gcp {
                Some(gcp) => Some(Arc::new(flotilla_provider_gcp::GcpProvider::new(gcp)?)),
                None => None,
            },
            ProviderKind::Azure => match &config.providers.azure {
                Some(azure) => Some(Arc::new(flotilla_provider_azure::AzureProvider::new(
                    azure,
                )?)),
                None => None,
            },
        };
        if let Some(p) = provider {
            providers.insert(kind, p);
        }
    }
    Ok(providers)
}

/// Refuses a plan that needs a provider this build cannot apply with.
fn check_providers(
    plan: &Plan,
    providers: &BTreeMap<ProviderKind, Arc<dyn Provider>>,
) -> anyhow::Result<()> {
    let missing: BTreeSet<&str> = plan
        .changes
        .iter()
        .filter(|c| c.action != Action::NoOp)
        .flat_map(|c| [c.before.as_ref(), c.after.as_ref()])
        .flatten()
        .filter_map(|attrs| attrs.get("provider").and_then(|v| v.as_str()))
        .filter(|name| ProviderKind::parse(name).is_none_or(|k| !providers.contains_key(&k)))
        .collect();
    match missing.len() {
        0 => Ok(()),
        1 => bail!(
            "provider `{}` cannot apply yet in this build; nothing was changed (`flotilla plan` works for it)",
            missing.first().copied().unwrap_or_default()
        ),
        _ => bail!(
            "providers {} cannot apply yet in this build; nothing was changed (`flotilla plan` works for them)",
            missing
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[allow(clippy::too_many_arguments)]
fn carry_out(
    rt: &tokio::runtime::Runtime,
    plan: &Plan,
    config: &Config,
    catalog: &flotilla_core::catalog::Catalog,
    providers: BTreeMap<ProviderKind, Arc<dyn Provider>>,
    store: Arc<dyn StateStore>,
    state: State,
    version: Option<flotilla_core::state::StoredVersion>,
    run: &RunArgs,
) -> ApplyReport {
    let progress = Arc::new(Progress::new());
    let events = {
        let p = progress.clone();
        EventSink::new(move |e| p.event(&e))
    };
    let cancel = CancelToken::new();
    let ctx = ApplyContext {
        providers,
        store,
        state,
        version,
        options: ApplyOptions {
            parallelism: run.parallelism as usize,
            max_offers_tried: run.max_offers_tried as usize,
            ..ApplyOptions::default()
        },
        fleets: Fleets::from_config(config, catalog),
        cancel: cancel.clone(),
        events,
    };
    let report = rt.block_on(async {
        let note = progress.clone();
        let signals = tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_err() {
                return;
            }
            cancel.cancel();
            note.line(
                "Interrupt received: starting nothing more; the operations in flight finish and are recorded. \
                 Press Ctrl-C again to exit at once.",
            );
            if tokio::signal::ctrl_c().await.is_ok() {
                note.line(
                    "warning: second interrupt, exiting at once: what the operations in flight make is not recorded \
                     in state; the next apply finds it by its tags and adopts it.",
                );
                std::process::exit(i32::from(EXIT_INTERRUPTED));
            }
        });
        let report = apply(plan, ctx).await;
        signals.abort();
        report
    });
    progress.clear();
    report
}

/// Prints the outcome; the exit code says it.
fn finish(report: &ApplyReport, destroy: bool) -> ExitCode {
    let c = report.counts();
    if report.is_success() {
        let line = if destroy {
            format!("Destroy complete! Resources: {} destroyed.\n", c.destroy)
        } else {
            format!(
                "Apply complete! Resources: {} added, {} changed, {} destroyed.\n",
                c.add, c.change, c.destroy
            )
        };
        let _ = crate::printer::stdout(&line);
        return ExitCode::SUCCESS;
    }
    let what = if destroy { "Destroy" } else { "Apply" };
    let failed: Vec<_> = report.failed().collect();
    let skipped: Vec<_> = report.skipped().collect();
    let mut out = format!(
        "\n{what} {}: {} added, {} changed, {} destroyed; {} failed, {} not run.\n",
        if report.cancelled {
            "cancelled"
        } else {
            "failed"
        },
        c.add,
        c.change,
        c.destroy,
        failed.len(),
        skipped.len()
    );
    let done: Vec<String> = report
        .done()
        .map(|o| match &o.status {
            OpStatus::Done { provider_id, .. } => format!(
                "  {}: {}{}\n",
                o.op.address,
                verbs(&o.op).1,
                provider_id
                    .as_ref()
                    .map(|id| format!(" ({id})"))
                    .unwrap_or_default()
            ),
            _ => String::new(),
        })
        .collect();
    if !done.is_empty() {
        out.push_str("Done:\n");
        out.extend(done);
    }
    if !failed.is_empty() {
        out.push_str("Failed:\n");
        for o in &failed {
            if let OpStatus::Failed { error, .. } = &o.status {
                out.push_str(&format!(
                    "  {}: {} failed: {error}\n",
                    o.op.address,
                    verbs(&o.op).2
                ));
            }
        }
    }
    if !skipped.is_empty() {
        out.push_str("Not run:\n");
        for o in &skipped {
            if let OpStatus::Skipped { because } = &o.status {
                out.push_str(&format!(
                    "  {}: {} skipped: {because}\n",
                    o.op.address,
                    verbs(&o.op).2
                ));
            }
        }
    }
    if let Some(e) = &report.error {
        out.push_str(&format!("error: {e}\n"));
        let mut source = std::error::Error::source(e);
        while let Some(cause) = source {
            out.push_str(&format!("  Caused by: {cause}\n"));
            source = cause.source();
        }
    }
    if report.cancelled {
        out.push_str("The state records everything that finished; run the same command again to carry out the rest.\n");
    } else if report.error.is_none() {
        out.push_str("The state records everything that was done; fix what failed and run the same command again.\n");
    }
    crate::printer::info(out.trim_end());
    if report.cancelled {
        ExitCode::from(EXIT_INTERRUPTED)
    } else {
        ExitCode::from(1)
    }
}

/// `Outputs:` and one `name = value` line each, as Terraform ends an apply; nothing when the
/// configuration has no `output` block.
fn print_outputs(outputs: &BTreeMap<String, serde_json::Value>) -> anyhow::Result<()> {
    if outputs.is_empty() {
        return Ok(());
    }
    let mut out = String::from("\nOutputs:\n\n");
    for (name, value) in outputs {
        out.push_str(&format!("{name} = {}\n", output_literal(value)));
    }
    crate::printer::stdout(&out)
}

/// A value as HCL writes it: `"a"`, `["a", "b"]`, `null`.
fn output_literal(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(output_literal)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

/// `(doing, done, noun)` for an operation: `creating`, `created`, `create`.
fn verbs(op: &Operation) -> (&'static str, &'static str, &'static str) {
    match op.step {
        Step::Create if op.replace => ("replacing (create)", "replaced", "create"),
        Step::Create => ("creating", "created", "create"),
        Step::Update => ("updating", "updated", "update"),
        Step::Destroy if op.replace => (
            "replacing (destroy)",
            "destroyed for replacement",
            "destroy",
        ),
        Step::Destroy => ("destroying", "destroyed", "destroy"),
        Step::Keep => ("keeping", "kept", "keep"),
    }
}

/// `0.4s`, `12s`, `3m05s`.
fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 {
        format!("{s:.1}s")
    } else if s < 60.0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

/// Progress on stderr: on a terminal, a spinner per running operation with its elapsed time
/// and a line per finish above them; otherwise one plain line per start and per finish.
struct Progress {
    bars: Option<(
        indicatif::MultiProgress,
        Mutex<HashMap<String, indicatif::ProgressBar>>,
    )>,
}

impl Progress {
    fn new() -> Progress {
        let bars = std::io::stderr().is_terminal().then(|| {
            (
                indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::stderr()),
                Mutex::new(HashMap::new()),
            )
        });
        Progress { bars }
    }

    /// A line for the person watching.
    fn line(&self, text: &str) {
        match &self.bars {
            Some((multi, _)) => {
                if multi.println(text).is_err() {
                    crate::printer::info(text);
                }
            }
            None => crate::printer::info(text),
        }
    }

    fn event(&self, e: &Event) {
        match e {
            Event::Started { op } => {
                let text = format!("{}: {}…", op.address, verbs(op).0);
                match &self.bars {
                    Some((multi, running)) => {
                        let bar = multi.add(indicatif::ProgressBar::new_spinner());
                        if let Ok(style) =
                            indicatif::ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                        {
                            bar.set_style(style);
                        }
                        bar.set_message(text);
                        bar.enable_steady_tick(Duration::from_millis(120));
                        running
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .insert(op.label(), bar);
                    }
                    None => self.line(&text),
                }
            }
            Event::Finished {
                op,
                elapsed,
                provider_id,
                adopted,
            } => {
                self.stop(op);
                let id = provider_id
                    .as_ref()
                    .map(|i| format!(" ({i})"))
                    .unwrap_or_default();
                if *adopted {
                    self.line(&format!(
                        "{}: found what an earlier, interrupted apply made{id}; adopted it in {}",
                        op.address,
                        human(*elapsed)
                    ));
                } else {
                    self.line(&format!(
                        "{}: {} in {}{id}",
                        op.address,
                        verbs(op).1,
                        human(*elapsed)
                    ));
                }
            }
            Event::Failed { op, error, elapsed } => {
                self.stop(op);
                self.line(&format!(
                    "{}: {} failed after {}: {error}",
                    op.address,
                    verbs(op).2,
                    human(*elapsed)
                ));
            }
            Event::FailedOver {
                address,
                from,
                why,
                to,
            } => self.line(&format!(
                "{address}: {} {} ({}: {}); trying {} at ${}/h",
                if why.kind == flotilla_core::provider::FailureKind::Quota {
                    "over quota, skipping the region of"
                } else {
                    "no capacity for"
                },
                offer_label(from),
                why.code,
                why.message,
                offer_label(to),
                to.price_per_hour
            )),
            Event::Retrying {
                op,
                error,
                attempt,
                delay,
            } => self.line(&format!(
                "{}: throttled ({}); retry {attempt} in {}",
                op.address,
                error.code,
                human(*delay)
            )),
            Event::Skipped { op, because } => {
                self.line(&format!(
                    "{}: {} skipped: {because}",
                    op.address,
                    verbs(op).2
                ));
            }
        }
    }

    fn stop(&self, op: &Operation) {
        if let Some((multi, running)) = &self.bars {
            let bar = running
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&op.label());
            if let Some(bar) = bar {
                bar.finish_and_clear();
                multi.remove(&bar);
            }
        }
    }

    fn clear(&self) {
        if let Some((multi, _)) = &self.bars {
            let _ = multi.clear();
        }
    }
}
