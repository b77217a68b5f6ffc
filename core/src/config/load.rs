//! Parsing, evaluation and checking behind [`super::load`].

use super::{Config, Diagnostics, LoadOptions, VarArg};

pub(super) fn load(options: &LoadOptions) -> Result<Config, Diagnostics> {
    todo!("{options:?}")
}

pub(super) fn load_sources(
    sources: &[(String, String)],
    var_args: &[VarArg],
    env: &[(String, String)],
) -> Result<Config, Diagnostics> {
    todo!("{sources:?}{var_args:?}{env:?}")
}
