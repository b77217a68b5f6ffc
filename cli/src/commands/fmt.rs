//! `flotilla fmt`.

pub(crate) fn run(args: &crate::args::FmtArgs) -> anyhow::Result<std::process::ExitCode> {
    todo!("{args:?}")
}
