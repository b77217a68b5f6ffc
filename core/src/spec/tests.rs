//! Grammar tests: every error case with its message and position, and round-trip properties
//! (`parse(display(x)) == x`) for every type the grammar prints.

use super::*;
use proptest::prelude::*;

fn err<T: std::fmt::Debug>(r: Result<T, SpecError>) -> SpecError {
    r.expect_err("expected a grammar error")
}

/// Asserts the message and the span (offset, len) of an error.
fn assert_err(e: &SpecError, message: &str, offset: usize, len: usize) {
    assert_eq!(e.message, message, "message of {e:?}");
    assert_eq!((e.offset, e.len), (offset, len), "span of {e:?}");
}

fn gpu(names: &[&str], count: Range<u32>) -> GpuSpec {
    GpuSpec {
        vendor: None,
        names: names.iter().map(|s| s.to_string()).collect(),
        memory: None,
        count,
    }
}

// ---- counts ----

#[test]
fn count_forms() {
    assert_eq!(parse_count("8").unwrap(), Range::exactly(8));
    assert_eq!(parse_count("8..").unwrap(), Range::at_least(8));
    assert_eq!(
        parse_count("..8").unwrap(),
        Range {
            min: None,
            max: Some(8)
        }
    );
    assert_eq!(
        parse_count("8..16").unwrap(),
        Range {
            min: Some(8),
            max: Some(16)
        }
    );
    assert_eq!(
        parse_count(" 2 .. 4 ").unwrap(),
        Range {
            min: Some(2),
            max: Some(4)
        }
    );
    assert_eq!(parse_count("4..4").unwrap(), Range::exactly(4));
}

#[test]
fn count_empty() {
    let e = err(parse_count(""));
    assert_err(&e, "empty count", 0, 0);
    assert_eq!(
        e.hint.as_deref(),
        Some("write `8`, `8..`, `..16` or `8..16`")
    );
}

#[test]
fn count_open_on_both_sides() {
    let e = err(parse_count(".."));
    assert_err(&e, "`..` is open on both sides", 0, 2);
    assert_eq!(
        e.hint.as_deref(),
        Some("give at least one bound: `8`, `8..`, `..16` or `8..16`")
    );
}

#[test]
fn count_min_above_max() {
    let e = err(parse_count("8..2"));
    assert_err(
        &e,
        "`8..2`: the lower bound 8 is above the upper bound 2",
        0,
        4,
    );
    assert_eq!(e.hint.as_deref(), Some("write `2..8`"));
}

#[test]
fn count_garbage() {
    assert_err(&err(parse_count("abc")), "`abc` is not a count", 0, 3);
    let e = err(parse_count("2..x"));
    assert_err(&e, "`x` is not a count", 3, 1);
    let e = err(parse_count("1.5"));
    assert_err(&e, "`1.5` is not a count", 0, 3);
    assert_eq!(
        e.hint.as_deref(),
        Some("counts are whole numbers, such as `8`")
    );
    assert_err(&err(parse_count("-1")), "`-1` is not a count", 0, 2);
}

#[test]
fn count_too_large() {
    let e = err(parse_count("1..99999999999"));
    assert_err(&e, "`99999999999` is too large for a count", 3, 11);
}

#[test]
fn count_two_ranges() {
    let e = err(parse_count("1..2..3"));
    assert_err(&e, "`1..2..3` has more than one `..`", 4, 2);
}

// ---- memory ----

#[test]
fn memory_units() {
    assert_eq!(parse_memory("80GB").unwrap(), Memory::from_gib(80));
    assert_eq!(parse_memory("80gb").unwrap(), Memory::from_gib(80));
    assert_eq!(parse_memory("80").unwrap(), Memory::from_gib(80));
    assert_eq!(parse_memory("512MB").unwrap(), Memory::from_mib(512));
    assert_eq!(parse_memory("1TB").unwrap(), Memory::from_gib(1024));
    assert_eq!(parse_memory("1tb").unwrap(), Memory::from_gib(1024));
    assert_eq!(parse_memory("1GB").unwrap(), Memory::from_mib(1024));
    assert_eq!(parse_memory("0.5GB").unwrap(), Memory::from_mib(512));
    assert_eq!(parse_memory("1.5TB").unwrap(), Memory::from_gib(1536));
    assert_eq!(parse_memory("0.3GB").unwrap(), Memory::from_mib(307));
    assert_eq!(parse_memory("7.5").unwrap(), Memory::from_mib(7680));
    assert_eq!(parse_memory("0").unwrap(), Memory::from_mib(0));
}

#[test]
fn memory_unknown_unit() {
    let e = err(parse_memory("24GiB"));
    assert_err(&e, "unknown memory unit `GiB`", 2, 3);
    assert_eq!(
        e.hint.as_deref(),
        Some("use MB, GB or TB (flotilla's GB is already 1024 MB)")
    );
    let e = err(parse_memory("24G"));
    assert_err(&e, "unknown memory unit `G`", 2, 1);
    assert_eq!(e.hint.as_deref(), Some("use MB, GB or TB"));
}

#[test]
fn memory_garbage() {
    let e = err(parse_memory("lots"));
    assert_err(&e, "`lots` is not a memory size", 0, 4);
    assert_eq!(
        e.hint.as_deref(),
        Some("write a number and a unit: `512MB`, `80GB` or `1TB`")
    );
    assert_err(
        &err(parse_memory("1.2.3GB")),
        "`1.2.3GB` is not a memory size",
        0,
        7,
    );
    assert_err(&err(parse_memory("")), "empty memory", 0, 0);
    assert_err(
        &err(parse_memory("8GB..")),
        "`8GB..` is a range, but a single memory size is expected here",
        3,
        2,
    );
}

#[test]
fn memory_too_large() {
    let e = err(parse_memory("99999999999999999TB"));
    assert_err(&e, "`99999999999999999TB` is too large", 0, 19);
    assert_err(
        &err(parse_memory("99999999999999999.5TB")),
        "`99999999999999999.5TB` is too large",
        0,
        21,
    );
}

#[test]
fn memory_range_forms() {
    let gb = Memory::from_gib;
    assert_eq!(
        parse_memory_range("24GB..").unwrap(),
        Range::at_least(gb(24))
    );
    assert_eq!(
        parse_memory_range("..1TB").unwrap(),
        Range {
            min: None,
            max: Some(gb(1024))
        }
    );
    assert_eq!(
        parse_memory_range("512MB..2GB").unwrap(),
        Range {
            min: Some(Memory::from_mib(512)),
            max: Some(gb(2))
        }
    );
    assert_eq!(parse_memory_range("80").unwrap(), Range::exactly(gb(80)));
}

#[test]
fn memory_range_errors() {
    let e = err(parse_memory_range(".."));
    assert_err(&e, "`..` is open on both sides", 0, 2);
    assert_eq!(
        e.hint.as_deref(),
        Some("give at least one bound: `24GB`, `24GB..`, `..1TB` or `16GB..80GB`")
    );
    let e = err(parse_memory_range("2TB..1TB"));
    assert_err(
        &e,
        "`2TB..1TB`: the lower bound 2TB is above the upper bound 1TB",
        0,
        8,
    );
    assert_eq!(e.hint.as_deref(), Some("write `1TB..2TB`"));
    assert_err(
        &err(parse_memory_range("1GB..2GiB")),
        "unknown memory unit `GiB`",
        6,
        3,
    );
    assert_err(&err(parse_memory_range("  ")), "empty memory", 0, 2);
}

// ---- gpu ----

#[test]
fn gpu_forms() {
    assert_eq!(
        parse_gpu("H100").unwrap(),
        gpu(&["H100"], Range::exactly(1))
    );
    assert_eq!(
        parse_gpu("H100:8").unwrap(),
        gpu(&["H100"], Range::exactly(8))
    );
    assert_eq!(
        parse_gpu("8:H100").unwrap(),
        gpu(&["H100"], Range::exactly(8))
    );
    assert_eq!(
        parse_gpu("A100,H100:1..8").unwrap(),
        gpu(
            &["A100", "H100"],
            Range {
                min: Some(1),
                max: Some(8)
            }
        )
    );
    let full = parse_gpu("80GB..:nvidia:2..:h100,A100").unwrap();
    assert_eq!(
        full,
        GpuSpec {
            vendor: Some(GpuVendor::Nvidia),
            names: vec!["h100".into(), "A100".into()],
            memory: Some(Range::at_least(Memory::from_gib(80))),
            count: Range::at_least(2),
        }
    );
    assert_eq!(full.to_string(), "nvidia:h100,A100:80GB..:2..");
    let any_nvidia = parse_gpu("NVIDIA:24GB..").unwrap();
    assert_eq!(any_nvidia.vendor, Some(GpuVendor::Nvidia));
    assert!(any_nvidia.names.is_empty());
    assert_eq!(any_nvidia.count, Range::exactly(1));
    assert_eq!(
        parse_gpu("amd:MI300X:8").unwrap().vendor,
        Some(GpuVendor::Amd)
    );
    assert_eq!(
        parse_gpu(" H100 : 8 ").unwrap(),
        gpu(&["H100"], Range::exactly(8))
    );
    assert_eq!(parse_gpu("RTXPRO6000").unwrap().names, ["RTXPRO6000"]);
}

#[test]
fn gpu_empty() {
    let e = err(parse_gpu(""));
    assert_err(&e, "empty GPU spec", 0, 0);
    assert!(e.hint.unwrap().contains("`H100:8`"));
}

#[test]
fn gpu_names_twice() {
    let e = err(parse_gpu("H100:A100"));
    assert_err(&e, "`A100`: GPU names given twice", 5, 4);
    assert_eq!(
        e.hint.as_deref(),
        Some("list alternatives with a comma: `H100,A100`")
    );
}

#[test]
fn gpu_count_twice() {
    let e = err(parse_gpu("H100:8:4"));
    assert_err(&e, "`4`: GPU count given twice", 7, 1);
    assert_eq!(
        e.hint.as_deref(),
        Some("`8` is already given; give one count, or a range such as `1..8`")
    );
}

#[test]
fn gpu_memory_twice() {
    let e = err(parse_gpu("80GB:H100:40GB.."));
    assert_err(&e, "`40GB..`: GPU memory given twice", 10, 6);
    assert!(e.hint.unwrap().starts_with("`80GB` is already given"));
}

#[test]
fn gpu_vendor_twice() {
    let e = err(parse_gpu("nvidia:amd"));
    assert_err(&e, "`amd`: GPU vendor given twice", 7, 3);
    assert_eq!(
        e.hint.as_deref(),
        Some("`nvidia` is already given; give one vendor")
    );
}

#[test]
fn gpu_unknown_unit() {
    let e = err(parse_gpu("A100:24GiB"));
    assert_err(&e, "unknown memory unit `GiB`", 7, 3);
    assert!(e.hint.unwrap().starts_with("use MB, GB or TB"));
    let e = err(parse_gpu("8x:H100"));
    assert_err(&e, "unknown memory unit `x`", 1, 1);
    assert_eq!(
        e.hint.as_deref(),
        Some("a GPU count goes in its own token: `H100:8`")
    );
}

#[test]
fn gpu_count_errors() {
    assert_err(
        &err(parse_gpu("H100:..")),
        "`..` is open on both sides",
        5,
        2,
    );
    assert_err(
        &err(parse_gpu("H100:8..2")),
        "`8..2`: the lower bound 8 is above the upper bound 2",
        5,
        4,
    );
    let e = err(parse_gpu("H100:0.5"));
    assert_err(&e, "`0.5` is not a whole number of GPUs", 5, 3);
    assert_eq!(
        e.hint.as_deref(),
        Some("for memory per GPU add a unit: `0.5GB`")
    );
    assert_err(&err(parse_gpu("H100:4,8")), "`4,8` is not a count", 5, 3);
}

#[test]
fn gpu_empty_tokens() {
    let e = err(parse_gpu("H100::8"));
    assert_err(&e, "empty token in GPU spec `H100::8`", 4, 1);
    assert_err(
        &err(parse_gpu("H100:")),
        "empty token in GPU spec `H100:`",
        4,
        1,
    );
    assert_err(&err(parse_gpu(":8")), "empty token in GPU spec `:8`", 0, 1);
    let e = err(parse_gpu("A100,,H100"));
    assert_err(&e, "empty GPU name in `A100,,H100`", 4, 1);
    assert_err(&err(parse_gpu("A100,")), "empty GPU name in `A100,`", 4, 1);
    assert_err(
        &err(parse_gpu("8:,A100")),
        "empty GPU name in `,A100`",
        2,
        1,
    );
}

#[test]
fn gpu_bad_names() {
    let e = err(parse_gpu("H 100"));
    assert_err(&e, "`H 100` is not a GPU name", 0, 5);
    let e = err(parse_gpu("A100,8"));
    assert_err(&e, "`8` is not a GPU name", 5, 1);
    assert!(e.hint.unwrap().contains("`H100:8`"));
    let e = err(parse_gpu("H100,nvidia:8"));
    assert_err(&e, "`nvidia` is a vendor, not a GPU name", 5, 6);
    assert_eq!(
        e.hint.as_deref(),
        Some("give the vendor as its own token: `nvidia:H100`")
    );
    assert_err(
        &err(parse_gpu("H100;8")),
        "`H100;8` is not a GPU name",
        0,
        6,
    );
}

#[test]
fn errors_display_their_message() {
    let e = err(parse_gpu("H100:A100"));
    assert_eq!(e.to_string(), "`A100`: GPU names given twice");
}

#[test]
fn serde_round_trips_through_strings() {
    let spec = parse_gpu("A100,H100:80GB:8").unwrap();
    let json = serde_json::to_string(&spec).unwrap();
    assert_eq!(json, "\"A100,H100:80GB:8\"");
    assert_eq!(serde_json::from_str::<GpuSpec>(&json).unwrap(), spec);
    let bad = serde_json::from_str::<Range<u32>>("\"8..2\"").unwrap_err();
    assert!(bad.to_string().contains("lower bound 8 is above"));
}

// ---- properties ----

fn memory_strategy() -> impl Strategy<Value = Memory> + Clone {
    prop_oneof![
        any::<u64>().prop_map(Memory::from_mib),
        (0u64..1 << 20).prop_map(Memory::from_mib),
        (0u64..1 << 20).prop_map(Memory::from_gib),
        (0u64..1 << 16).prop_map(|tb| Memory::from_gib(tb * 1024)),
    ]
}

/// Valid ranges: ordered bounds, at least one of them set (`..` is not valid input).
fn range_strategy<T: Ord + Copy + std::fmt::Debug + 'static>(
    value: impl Strategy<Value = T> + Clone + 'static,
) -> impl Strategy<Value = Range<T>> {
    (
        proptest::option::of(value.clone()),
        proptest::option::of(value),
    )
        .prop_filter("`..` is not valid input", |(a, b)| {
            a.is_some() || b.is_some()
        })
        .prop_map(|(a, b)| match (a, b) {
            (Some(a), Some(b)) => Range {
                min: Some(a.min(b)),
                max: Some(a.max(b)),
            },
            (min, max) => Range { min, max },
        })
}

fn name_strategy() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9_-]{0,9}".prop_filter("vendors are not names", |n| {
        !n.eq_ignore_ascii_case("nvidia") && !n.eq_ignore_ascii_case("amd")
    })
}

fn gpu_strategy() -> impl Strategy<Value = GpuSpec> {
    (
        proptest::option::of(prop_oneof![Just(GpuVendor::Nvidia), Just(GpuVendor::Amd)]),
        proptest::collection::vec(name_strategy(), 0..4),
        proptest::option::of(range_strategy(memory_strategy())),
        range_strategy(any::<u32>()),
    )
        .prop_map(|(vendor, names, memory, count)| GpuSpec {
            vendor,
            names,
            memory,
            count,
        })
}

proptest! {
    #[test]
    fn memory_round_trips(m in memory_strategy()) {
        prop_assert_eq!(parse_memory(&m.to_string()).unwrap(), m);
    }

    #[test]
    fn memory_range_round_trips(r in range_strategy(memory_strategy())) {
        prop_assert_eq!(parse_memory_range(&r.to_string()).unwrap(), r);
    }

    #[test]
    fn count_round_trips(r in range_strategy(any::<u32>())) {
        prop_assert_eq!(parse_count(&r.to_string()).unwrap(), r);
    }

    #[test]
    fn gpu_round_trips(g in gpu_strategy()) {
        prop_assert_eq!(parse_gpu(&g.to_string()).unwrap(), g);
    }

    /// Whatever the input, the parsers answer (no panic) and any error span lies within it.
    #[test]
    fn errors_point_inside_the_input(s in "[0-9A-Za-z.:, ]{0,16}") {
        for e in [
            parse_gpu(&s).err(),
            parse_count(&s).err(),
            parse_memory_range(&s).err(),
            parse_memory(&s).err(),
        ].into_iter().flatten() {
            prop_assert!(e.offset + e.len <= s.len(), "{:?} for {:?}", e, s);
            prop_assert!(s.is_empty() || e.len >= 1, "{:?} for {:?}", e, s);
        }
    }
}
