//! `flotilla state list | show ADDR | rm ADDR… | mv FROM TO | pull | push FILE [--force]`:
//! read and edit the state by hand, on any store.
//!
//! Every edit runs under the state lock and writes with a compare-and-swap against the version
//! it read, raising the serial by one, so an edit can never overwrite an apply that ran in the
//! meantime; the store keeps the previous version (a backup object or file). `push` replaces
//! the whole document, so it refuses a document of another lineage (another state's history)
//! or an older serial (a stale copy) unless `--force`.

use crate::args::{StateArgs, StateCommand, StateLocation};
use anyhow::{Context as _, bail};
use flotilla_core::state::{State, StoredVersion, address_cmp};
use std::path::Path;
use std::process::ExitCode;

/// `--state`, else the fleet files' `state { url }` when there are fleet files, else
/// `DIR/flotilla.state.json`, as `plan` and `apply` resolve it.
pub(crate) fn resolve_url(location: &StateLocation) -> anyhow::Result<String> {
    if let Some(url) = &location.state {
        return Ok(url.clone());
    }
    let dir = &location.config.dir;
    let configured = if location.config.files.is_empty() && !has_fleet_files(dir) {
        None
    } else {
        super::plan::load_config(&location.config)?.state_url
    };
    let path = match configured {
        Some(url) if url.contains("://") => return Ok(url),
        Some(path) => std::path::PathBuf::from(path),
        None => std::path::PathBuf::from(super::plan::DEFAULT_STATE_FILE),
    };
    // Relative to `-C DIR`, as the fleet files are.
    Ok(if path.is_absolute() || dir == Path::new(".") {
        path.display().to_string()
    } else {
        dir.join(path).display().to_string()
    })
}

/// Whether `dir` holds any `*.hcl` file.
fn has_fleet_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "hcl"))
    })
}

pub(crate) fn run(args: &StateArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        StateCommand::List { location } => {
            let state = read(location)?;
            let mut out = String::new();
            for r in &state.resources {
                out.push_str(&r.address);
                out.push('\n');
            }
            crate::printer::stdout(&out)?;
        }
        StateCommand::Show { address, location } => {
            let state = read(location)?;
            let Some(resource) = state.get(address) else {
                bail!("{}", not_found(&state, address, &resolve_url(location)?));
            };
            let mut text = serde_json::to_string_pretty(resource)?;
            text.push('\n');
            crate::printer::stdout(&text)?;
        }
        StateCommand::Pull { location } => {
            let url = resolve_url(location)?;
            let store = flotilla_state::open(&url)?;
            let rt = super::plan::runtime()?;
            let Some((state, _)) = rt.block_on(store.read())? else {
                bail!("there is no state at `{url}` yet; `flotilla apply` creates it");
            };
            crate::printer::stdout(&state.to_json())?;
        }
        StateCommand::Rm {
            addresses,
            location,
        } => {
            let removed = edit(location, "state rm", |state, url| {
                let mut removed = Vec::new();
                for address in addresses {
                    let Some(r) = state.get(address).cloned() else {
                        bail!("{}; nothing was removed", not_found(state, address, url));
                    };
                    state.resources.retain(|x| x.address != *address);
                    removed.push(r);
                }
                Ok(removed)
            })?;
            for r in removed {
                crate::printer::info(&format!(
                    "Removed {} from state. The {} itself ({} {}) still exists: flotilla no \
                     longer manages it.",
                    r.address,
                    r.kind.as_str(),
                    r.provider.as_str(),
                    r.provider_id
                ));
            }
        }
        StateCommand::Mv { from, to, location } => {
            edit(location, "state mv", |state, url| {
                if state.get(from).is_none() {
                    bail!("{}; nothing was moved", not_found(state, from, url));
                }
                if state.get(to).is_some() {
                    bail!(
                        "`{to}` is already in state `{url}`; remove it first (`flotilla state rm \
                         {to}`) or choose another address. Nothing was moved"
                    );
                }
                for r in &mut state.resources {
                    if r.address == *from {
                        r.address.clone_from(to);
                    }
                    for dep in &mut r.dependencies {
                        if dep == from {
                            dep.clone_from(to);
                        }
                    }
                }
                state
                    .resources
                    .sort_by(|a, b| address_cmp(&a.address, &b.address));
                Ok(())
            })?;
            crate::printer::info(&format!("Moved {from} to {to}."));
        }
        StateCommand::Push {
            file,
            force,
            location,
        } => push(file, *force, location)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// "`ADDR` is not in state `URL`" with the addresses it has.
fn not_found(state: &State, address: &str, url: &str) -> String {
    let known: Vec<&str> = state.resources.iter().map(|r| r.address.as_str()).collect();
    if known.is_empty() {
        format!("`{address}` is not in state `{url}`: the state holds no resources")
    } else {
        format!(
            "`{address}` is not in state `{url}`; it holds: {}",
            known.join(", ")
        )
    }
}

/// Reads the state (no state is an empty one). Without the lock: a read changes nothing, and
/// looking at the state while an apply runs is what a person wants to do.
fn read(location: &StateLocation) -> anyhow::Result<State> {
    let url = resolve_url(location)?;
    let store = flotilla_state::open(&url)?;
    let rt = super::plan::runtime()?;
    Ok(rt
        .block_on(store.read())?
        .map(|(s, _)| s)
        .unwrap_or_else(State::empty))
}

/// Runs `change` on the state under the lock and writes the result one serial higher, with a
/// compare-and-swap against the version read. Nothing is written when `change` fails.
fn edit<T>(
    location: &StateLocation,
    operation: &str,
    change: impl FnOnce(&mut State, &str) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let url = resolve_url(location)?;
    let store = flotilla_state::open(&url)?;
    let rt = super::plan::runtime()?;
    rt.block_on(async {
        let lock = super::lock::acquire(store.as_ref(), operation, location.lock_timeout).await?;
        let result = async {
            let Some((mut state, version)) = store.read().await? else {
                bail!("there is no state at `{url}` yet; nothing to change");
            };
            let out = change(&mut state, &url)?;
            state.serial += 1;
            state.flotilla_version = flotilla_core::VERSION.to_string();
            store.write(&state, Some(&version)).await?;
            Ok(out)
        }
        .await;
        let unlocked = store.unlock(&lock.id).await;
        let out = result?;
        unlocked?;
        Ok(out)
    })
}

/// `state push FILE [--force]`.
fn push(file: &Path, force: bool, location: &StateLocation) -> anyhow::Result<()> {
    let (text, origin) = if file == Path::new("-") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("cannot read the state document from stdin")?;
        (text, "stdin".to_string())
    } else {
        (fs_err::read_to_string(file)?, file.display().to_string())
    };
    let mut pushed = State::from_json(&text, &origin)?;
    let url = resolve_url(location)?;
    let store = flotilla_state::open(&url)?;
    let rt = super::plan::runtime()?;
    let serial = rt.block_on(async {
        let lock =
            super::lock::acquire(store.as_ref(), "state push", location.lock_timeout).await?;
        let result = async {
            let current: Option<(State, StoredVersion)> = store.read().await?;
            if let Some((current, _)) = &current {
                if current.lineage != pushed.lineage && !force {
                    bail!(
                        "`{origin}` is a state of another lineage ({}) than `{url}` ({}): it \
                         would replace another history of resources; nothing was written. Pass \
                         --force if that is what you want",
                        pushed.lineage,
                        current.lineage
                    );
                }
                if pushed.serial < current.serial && !force {
                    bail!(
                        "`{origin}` has serial {}, older than `{url}` at serial {}: it is a stale \
                         copy; nothing was written. Pull the state again (`flotilla state pull`), \
                         or pass --force to replace it anyway",
                        pushed.serial,
                        current.serial
                    );
                }
            }
            // Every write raises the serial, above both the stored and the pushed one, so that
            // a plan made against either is refused as stale.
            let floor = current.as_ref().map_or(0, |(c, _)| c.serial);
            pushed.serial = pushed.serial.max(floor) + 1;
            store
                .write(&pushed, current.as_ref().map(|(_, v)| v))
                .await?;
            Ok(pushed.serial)
        }
        .await;
        let unlocked = store.unlock(&lock.id).await;
        let serial = result?;
        unlocked?;
        Ok::<_, anyhow::Error>(serial)
    })?;
    crate::printer::info(&format!(
        "Pushed `{origin}` to `{url}` (now serial {serial})."
    ));
    Ok(())
}
