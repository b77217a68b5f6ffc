//! The claim file: how a host says which state's node runs on it.
//!
//! A host has no cloud API to ask "who owns this machine?", so flotilla leaves a small JSON
//! file on it, `/var/lib/flotilla/claim.json` for root or `~/.flotilla/claim.json` otherwise
//! (`FLOTILLA_CLAIM_DIR` in the login environment overrides both, which is how one machine
//! can stand in for several hosts in tests). It is written to a temporary file and then
//! hard-linked into place: the link is atomic and fails when a claim already exists, so two
//! applies racing for one host cannot both win, and a crash never leaves half a file.

use serde::{Deserialize, Serialize};

/// Shell lines that set `$d` (the claim directory) and `$f` (the claim file).
pub const CLAIM_DIR_SH: &str = r#"if [ -n "${FLOTILLA_CLAIM_DIR:-}" ]; then d="$FLOTILLA_CLAIM_DIR"; elif [ "$(id -u)" = 0 ]; then d=/var/lib/flotilla; else d="$HOME/.flotilla"; fi; f="$d/claim.json""#;

/// The claim file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The lineage of the state whose node runs here.
    pub lineage: String,
    /// That node's address.
    pub address: String,
    /// When it was claimed, RFC 3339 UTC.
    #[serde(default)]
    pub claimed_at: String,
    /// Whether the host's `setup` commands finished.
    #[serde(default)]
    pub setup_done: bool,
}

impl Claim {
    /// Whether this claim is the node `address` of state `lineage`.
    pub fn is(&self, lineage: &str, address: &str) -> bool {
        self.lineage == lineage && self.address == address
    }
}

/// Quotes a string for a POSIX shell.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Takes the host if it is free: prints `claimed`, or `held` and the claim that is there.
pub fn claim_script(claim: &Claim) -> String {
    let json = serde_json::to_string(claim).unwrap_or_default();
    format!(
        r#"{CLAIM_DIR_SH}
mkdir -p "$d" || exit 1
t="$d/.claim.$$"
printf '%s\n' {json} > "$t" || exit 1
if ln "$t" "$f" 2>/dev/null; then rm -f "$t"; echo claimed; else rm -f "$t"; echo held; cat "$f"; fi
"#,
        json = quote(&json)
    )
}

/// Replaces the claim (same owner) atomically, to record that setup finished.
pub fn rewrite_script(claim: &Claim) -> String {
    let json = serde_json::to_string(claim).unwrap_or_default();
    format!(
        r#"{CLAIM_DIR_SH}
t="$d/.claim.$$"
printf '%s\n' {json} > "$t" && mv -f "$t" "$f"
"#,
        json = quote(&json)
    )
}

/// Prints the claim, if any.
pub fn read_script() -> String {
    format!("{CLAIM_DIR_SH}\ncat \"$f\" 2>/dev/null\ntrue\n")
}

/// Removes the claim if it is still `lineage`'s node `address`: prints `released`, `absent`
/// or `held` and the claim that is there.
pub fn release_script(lineage: &str, address: &str) -> String {
    format!(
        r#"{CLAIM_DIR_SH}
if [ ! -e "$f" ]; then echo absent; exit 0; fi
c="$(cat "$f")"
case "$c" in
  *{lineage}*{address}*) rm -f "$f" && echo released ;;
  *) echo held; printf '%s\n' "$c" ;;
esac
"#,
        lineage = quote(&format!("\"lineage\":\"{lineage}\"")),
        address = quote(&format!("\"address\":\"{address}\"")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(quote("a'b"), r"'a'\''b'");
    }

    #[test]
    fn a_claim_round_trips_and_matches_its_owner() {
        let c = Claim {
            lineage: "L".into(),
            address: "fleet.a[0]".into(),
            claimed_at: "now".into(),
            setup_done: false,
        };
        let back: Claim = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        assert!(c.is("L", "fleet.a[0]"));
        assert!(!c.is("L", "fleet.a[1]"));
        assert!(!c.is("M", "fleet.a[0]"));
    }
}
