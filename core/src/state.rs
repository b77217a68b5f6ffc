//! The state document and the [`StateStore`] port. Filled by the plan-engine issue.
