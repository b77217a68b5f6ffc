//! The planner: desired fleets versus state. Filled by the plan-engine issue.
