//! "Did you mean" for misspelt names, and the "expected one of" lists that go with them.

/// The closest candidate to `name`, if one is close enough to be a likely typo: at most one
/// edit for short names, two for longer ones (a swap of two neighbours counts as one).
pub(super) fn did_you_mean<'a, I>(name: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    closest(name, candidates).map(|c| format!("did you mean `{c}`?"))
}

/// The candidate [`did_you_mean`] would suggest, for callers that phrase the hint themselves.
pub(crate) fn closest<'a, I>(name: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let limit = if name.chars().count() <= 3 { 1 } else { 2 };
    let lower = name.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (distance(&lower, &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal-string-alignment distance: Levenshtein plus adjacent transpositions.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// "expected one of `a`, `b`, `c`" (or "expected `a`" for a single choice).
pub(super) fn expected_one_of<'a, I>(choices: I) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    let list: Vec<String> = choices.into_iter().map(|c| format!("`{c}`")).collect();
    match list.len() {
        0 => "expected nothing here".to_string(),
        1 => format!("expected {}", list[0]),
        _ => format!("expected one of {}", list.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let names = ["cpu", "memory", "disk", "gpu", "gpu_total_memory"];
        assert_eq!(
            did_you_mean("gpus", names).as_deref(),
            Some("did you mean `gpu`?")
        );
        assert_eq!(
            did_you_mean("memroy", names).as_deref(),
            Some("did you mean `memory`?")
        );
        assert_eq!(
            did_you_mean("Disk", names).as_deref(),
            Some("did you mean `disk`?")
        );
        assert_eq!(did_you_mean("bandwidth", names), None);
        assert_eq!(did_you_mean("x", names), None);
    }

    #[test]
    fn lists_choices() {
        assert_eq!(expected_one_of(["a"]), "expected `a`");
        assert_eq!(expected_one_of(["a", "b"]), "expected one of `a`, `b`");
    }
}
