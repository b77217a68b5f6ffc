//! `flotilla offers`.

pub(crate) fn run(args: &crate::args::OffersArgs, color: bool) -> anyhow::Result<std::process::ExitCode> {
    todo!("{args:?}{color}")
}
