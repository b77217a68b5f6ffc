//! The executor: walks a plan's dependency graph with bounded parallelism, fails over to the
//! next offer on capacity errors, and writes state after every operation. Filled by the apply
//! issue; until then `flotilla apply` is not offered.
