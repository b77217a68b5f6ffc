//! `flotilla validate`.

pub(crate) fn run(args: &crate::args::ConfigArgs, color: bool) -> anyhow::Result<std::process::ExitCode> {
    todo!("{args:?}{color}")
}
