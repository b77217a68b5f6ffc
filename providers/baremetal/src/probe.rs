//! What a host has: one shell script run over SSH prints the architecture, CPUs, memory, root
//! disk space, the GPU tools' answers and the claim file, in sections; this module parses them
//! and maps the GPU names and memory sizes the drivers report onto the catalog's (`NVIDIA
//! A100-SXM4-80GB`, 81920 MiB -> `A100`, 80GB), so a host's offer compares with cloud offers.

use crate::claim::{CLAIM_DIR_SH, Claim};
use flotilla_core::config::HostFacts;
use flotilla_core::spec::{GpuVendor, Memory};

/// The probe script: `key=value` lines, then `--- NAME` sections with each tool's raw output.
/// Plain POSIX sh, so it runs under whatever login shell the host has.
pub fn script() -> String {
    format!(
        r#"{CLAIM_DIR_SH}
echo "arch=$(uname -m)"
echo "vcpus=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)"
echo "mem_kib=$(awk '/^MemTotal:/ {{print $2}}' /proc/meminfo 2>/dev/null)"
echo "disk_free_kib=$(df -Pk / 2>/dev/null | awk 'NR==2 {{print $4}}')"
if command -v nvidia-smi >/dev/null 2>&1; then
  echo "--- nvidia-smi"
  nvidia-smi --query-gpu=name,memory.total,uuid,driver_version --format=csv,noheader,nounits 2>&1
fi
if command -v amd-smi >/dev/null 2>&1; then
  echo "--- amd-smi"
  amd-smi static --asic --vram --json 2>/dev/null
elif command -v rocm-smi >/dev/null 2>&1; then
  echo "--- rocm-smi"
  rocm-smi --showproductname --showmeminfo vram --json 2>/dev/null
fi
echo "--- claim"
cat "$f" 2>/dev/null
true
"#
    )
}

/// One GPU as a driver tool reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Gpu {
    /// The tool's name (`NVIDIA H100 80GB HBM3`).
    pub raw_name: String,
    /// Memory, MiB, as reported.
    pub memory_mib: u64,
    /// Driver version, when reported.
    pub driver: String,
    /// Vendor.
    pub vendor: GpuVendor,
}

/// Everything the probe script printed, parsed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Probed {
    /// The facts, GPUs mapped to catalog names.
    pub facts: HostFacts,
    /// The claim file, if there is one.
    pub claim: Option<Claim>,
    /// A claim file that is there but not JSON (someone else's file, or damage).
    pub claim_unreadable: Option<String>,
}

/// Parses the probe script's output.
pub fn parse(output: &str) -> Probed {
    let mut section = "";
    let mut kv = std::collections::BTreeMap::new();
    let mut sections: std::collections::BTreeMap<&str, String> = std::collections::BTreeMap::new();
    for line in output.lines() {
        if let Some(name) = line.strip_prefix("--- ") {
            section = name.trim();
            sections.entry(section).or_default();
            continue;
        }
        if section.is_empty() {
            if let Some((k, v)) = line.split_once('=') {
                kv.insert(k.trim(), v.trim());
            }
        } else {
            let text = sections.entry(section).or_default();
            text.push_str(line);
            text.push('\n');
        }
    }
    let num = |k: &str| kv.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let mut gpus = Vec::new();
    if let Some(text) = sections.get("nvidia-smi") {
        gpus.extend(parse_nvidia_smi(text));
    }
    if let Some(text) = sections.get("amd-smi") {
        gpus.extend(parse_amd_smi(text));
    }
    if let Some(text) = sections.get("rocm-smi") {
        gpus.extend(parse_rocm_smi(text));
    }
    let mut facts = HostFacts {
        arch: kv.get("arch").map(|s| (*s).to_string()).unwrap_or_default(),
        vcpus: u32::try_from(num("vcpus")).unwrap_or(u32::MAX),
        memory: Memory::from_mib(num("mem_kib") / 1024),
        disk_free: Memory::from_mib(num("disk_free_kib") / 1024),
        ..HostFacts::default()
    };
    apply_gpus(&mut facts, &gpus);
    let (claim, claim_unreadable) = match sections.get("claim").map(|s| s.trim()) {
        None | Some("") => (None, None),
        Some(text) => match serde_json::from_str::<Claim>(text) {
            Ok(c) => (Some(c), None),
            Err(e) => (None, Some(e.to_string())),
        },
    };
    Probed {
        facts,
        claim,
        claim_unreadable,
    }
}

/// Folds the GPUs into the facts. A host is one offer, so it has one GPU model: the most
/// common one (mixed hosts are rare; the others are left out of the offer).
pub fn apply_gpus(facts: &mut HostFacts, gpus: &[Gpu]) {
    let mut counts: Vec<((GpuVendor, String, Memory), u32)> = Vec::new();
    for g in gpus {
        let key = (
            g.vendor,
            catalog_name(&g.raw_name),
            nominal_memory(&g.raw_name, g.memory_mib),
        );
        match counts.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => counts.push((key, 1)),
        }
    }
    if let Some(((vendor, name, memory), count)) = counts.iter().max_by_key(|(_, n)| *n).cloned() {
        facts.gpu_vendor = Some(vendor);
        facts.gpu_name = name;
        facts.gpu_memory = memory;
        facts.gpu_count = count;
        facts.driver = gpus
            .iter()
            .map(|g| g.driver.clone())
            .find(|d| !d.is_empty())
            .unwrap_or_default();
    }
}

/// Parses `nvidia-smi --query-gpu=name,memory.total,uuid,driver_version
/// --format=csv,noheader,nounits`: one line per GPU, `NAME, MiB, UUID, DRIVER`. Lines that do
/// not parse (an error message from a broken driver) are skipped.
pub fn parse_nvidia_smi(text: &str) -> Vec<Gpu> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let [name, memory, _uuid, driver, ..] = fields.as_slice() else {
                return None;
            };
            let memory_mib = memory.parse::<f64>().ok()?;
            if name.is_empty() || memory_mib <= 0.0 {
                return None;
            }
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Some(Gpu {
                raw_name: (*name).to_string(),
                memory_mib: memory_mib as u64,
                driver: (*driver).to_string(),
                vendor: GpuVendor::Nvidia,
            })
        })
        .collect()
}

/// Parses `amd-smi static --asic --vram --json`: a list of GPUs with `asic.market_name` and
/// `vram.size` (`{ "value": N, "unit": "MB" }` or a number of MB).
pub fn parse_amd_smi(text: &str) -> Vec<Gpu> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text.trim()) else {
        return Vec::new();
    };
    let list = match &value {
        serde_json::Value::Array(items) => items.clone(),
        serde_json::Value::Object(o) => o
            .get("gpu_data")
            .and_then(|v| v.as_array())
            .cloned()
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    list.iter()
        .filter_map(|gpu| {
            let name = gpu.pointer("/asic/market_name")?.as_str()?.to_string();
            let size = gpu.pointer("/vram/size")?;
            let (value, unit) = match size {
                serde_json::Value::Object(o) => (
                    o.get("value").and_then(json_number)?,
                    o.get("unit").and_then(|u| u.as_str()).unwrap_or("MB"),
                ),
                other => (json_number(other)?, "MB"),
            };
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let memory_mib = match unit {
                "GB" => (value * 1024.0) as u64,
                _ => value as u64,
            };
            Some(Gpu {
                raw_name: name,
                memory_mib,
                driver: String::new(),
                vendor: GpuVendor::Amd,
            })
        })
        .collect()
}

/// Parses `rocm-smi --showproductname --showmeminfo vram --json`: `{ "card0": { "Card
/// series": "…", "VRAM Total Memory (B)": "…" }, … }`.
pub fn parse_rocm_smi(text: &str) -> Vec<Gpu> {
    let Ok(serde_json::Value::Object(cards)) = serde_json::from_str(text.trim()) else {
        return Vec::new();
    };
    cards
        .iter()
        .filter(|(k, _)| k.starts_with("card"))
        .filter_map(|(_, card)| {
            let name = ["Card Series", "Card series", "Card SKU", "Card model"]
                .iter()
                .find_map(|k| card.get(*k).and_then(|v| v.as_str()))?
                .to_string();
            let bytes = card.get("VRAM Total Memory (B)").and_then(json_number)?;
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Some(Gpu {
                raw_name: name,
                memory_mib: (bytes / 1_048_576.0) as u64,
                driver: String::new(),
                vendor: GpuVendor::Amd,
            })
        })
        .collect()
}

fn json_number(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Catalog GPU names with their nominal memory sizes (GB), most specific first where one name
/// contains another (`A100` before `A10`, `L40S` before `L40` before `L4`).
const KNOWN: &[(&str, &[u64])] = &[
    ("GH200", &[96, 144]),
    ("H200", &[141]),
    ("H100", &[80, 94]),
    ("H800", &[80]),
    ("B300", &[268, 288]),
    ("B200", &[180, 192]),
    ("A100", &[40, 80]),
    ("A10G", &[24]),
    ("A10", &[24]),
    ("A40", &[48]),
    ("L40S", &[48]),
    ("L40", &[48]),
    ("L4", &[24]),
    ("T4G", &[16]),
    ("T4", &[16]),
    ("V100", &[16, 32]),
    ("P100", &[16]),
    ("P4", &[8]),
    ("M60", &[8]),
    ("RTXPRO6000", &[96]),
    ("MI325X", &[256]),
    ("MI300X", &[192]),
    ("MI250X", &[128]),
    ("MI250", &[128]),
    ("MI210", &[64]),
    ("MI100", &[32]),
    ("MI25", &[16]),
    ("V520", &[8]),
];

/// Words in driver names that are not part of the chip name.
const NOISE: &[&str] = &[
    "NVIDIA", "TESLA", "GEFORCE", "AMD", "INSTINCT", "RADEON", "PRO",
];

/// The catalog's name for a driver's GPU name: `NVIDIA A100-SXM4-80GB` -> `A100`, `NVIDIA H100
/// 80GB HBM3` -> `H100`, `NVIDIA RTX PRO 6000 Blackwell Server Edition` -> `RTXPRO6000`, `AMD
/// Instinct MI300X OAM` -> `MI300X`. An unknown chip keeps its first significant word.
pub fn catalog_name(raw: &str) -> String {
    let upper = raw.to_ascii_uppercase();
    let squashed: String = upper.chars().filter(char::is_ascii_alphanumeric).collect();
    if squashed.contains("RTXPRO6000") {
        return "RTXPRO6000".to_string();
    }
    let tokens: Vec<&str> = upper
        .split(|c: char| c.is_whitespace() || c == '-' || c == '_' || c == '/')
        .filter(|t| !t.is_empty())
        .collect();
    for (name, _) in KNOWN {
        if tokens.iter().any(|t| t == name) {
            return (*name).to_string();
        }
    }
    // A token that starts with a known name and goes on with a form factor (`H100SXM`).
    for (name, _) in KNOWN {
        if tokens.iter().any(|t| {
            t.strip_prefix(name)
                .is_some_and(|rest| rest.chars().next().is_none_or(|c| !c.is_ascii_digit()))
        }) {
            return (*name).to_string();
        }
    }
    tokens
        .iter()
        .find(|t| !NOISE.contains(t))
        .map_or_else(|| raw.trim().to_string(), |t| (*t).to_string())
}

/// The nominal size of a card that reports `mib`: the catalog size of its chip nearest to
/// what it reports (drivers report a little less than the label: 81559 MiB is an 80GB H100);
/// for an unknown chip, the reported size rounded to whole GB.
pub fn nominal_memory(raw: &str, mib: u64) -> Memory {
    let name = catalog_name(raw);
    #[allow(clippy::cast_precision_loss)]
    let gib = mib as f64 / 1024.0;
    let sizes = KNOWN
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(&[][..], |(_, s)| *s);
    #[allow(clippy::cast_precision_loss)]
    let nearest = sizes
        .iter()
        .copied()
        .min_by(|a, b| (*a as f64 - gib).abs().total_cmp(&(*b as f64 - gib).abs()));
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    match nearest {
        // Only snap when the report is within 12% of the label: a 40GB A100 reporting 40960
        // MiB must not become an 80GB one.
        #[allow(clippy::cast_precision_loss)]
        Some(n) if (n as f64 - gib).abs() <= n as f64 * 0.12 => Memory::from_gib(n),
        _ => Memory::from_gib(gib.round() as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvidia_smi_lines_parse() {
        let text = "NVIDIA A100-SXM4-80GB, 81920, GPU-5d2e6a7c-0000-0000-0000-000000000001, 535.129.03\n\
                    NVIDIA A100-SXM4-80GB, 81920, GPU-5d2e6a7c-0000-0000-0000-000000000002, 535.129.03\n";
        let gpus = parse_nvidia_smi(text);
        assert_eq!(gpus.len(), 2);
        assert_eq!(gpus[0].raw_name, "NVIDIA A100-SXM4-80GB");
        assert_eq!(gpus[0].memory_mib, 81920);
        assert_eq!(gpus[0].driver, "535.129.03");
    }

    #[test]
    fn nvidia_smi_errors_are_skipped() {
        let text = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n\
                    [N/A], [N/A], GPU-x, 550.54.15\n";
        assert!(parse_nvidia_smi(text).is_empty());
    }

    #[test]
    fn driver_names_map_to_catalog_names() {
        for (raw, want) in [
            ("NVIDIA A100-SXM4-80GB", "A100"),
            ("NVIDIA A100-PCIE-40GB", "A100"),
            ("NVIDIA H100 80GB HBM3", "H100"),
            ("NVIDIA H100 NVL", "H100"),
            ("NVIDIA H200", "H200"),
            ("NVIDIA A10G", "A10G"),
            ("NVIDIA A10", "A10"),
            ("NVIDIA L4", "L4"),
            ("NVIDIA L40S", "L40S"),
            ("Tesla T4", "T4"),
            ("Tesla V100-SXM2-32GB", "V100"),
            ("NVIDIA B200", "B200"),
            ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "RTXPRO6000"),
            ("AMD Instinct MI300X OAM", "MI300X"),
            ("AMD Instinct MI250X", "MI250X"),
            ("NVIDIA GeForce RTX 4090", "RTX"),
        ] {
            assert_eq!(catalog_name(raw), want, "{raw}");
        }
    }

    #[test]
    fn memory_snaps_to_the_nominal_size() {
        let gb = |n| Memory::from_gib(n);
        assert_eq!(nominal_memory("NVIDIA H100 80GB HBM3", 81559), gb(80));
        assert_eq!(nominal_memory("NVIDIA A100-SXM4-80GB", 81920), gb(80));
        assert_eq!(nominal_memory("NVIDIA A100-PCIE-40GB", 40960), gb(40));
        assert_eq!(nominal_memory("NVIDIA H100 NVL", 95830), gb(94));
        assert_eq!(nominal_memory("NVIDIA H200", 143_771), gb(141));
        assert_eq!(nominal_memory("NVIDIA L4", 23034), gb(24));
        assert_eq!(nominal_memory("Tesla T4", 15360), gb(16));
        assert_eq!(nominal_memory("NVIDIA B200", 183_359), gb(180));
        assert_eq!(nominal_memory("AMD Instinct MI300X OAM", 196_592), gb(192));
        // Unknown chips round to whole GB.
        assert_eq!(nominal_memory("NVIDIA GeForce RTX 4090", 24564), gb(24));
    }

    #[test]
    fn the_whole_probe_output_parses() {
        let out = "arch=x86_64\nvcpus=64\nmem_kib=1056000000\ndisk_free_kib=2000000000\n\
                   --- nvidia-smi\n\
                   NVIDIA H100 80GB HBM3, 81559, GPU-1, 550.54.15\n\
                   NVIDIA H100 80GB HBM3, 81559, GPU-2, 550.54.15\n\
                   --- claim\n\
                   {\"lineage\":\"L\",\"address\":\"fleet.a[0]\",\"claimed_at\":\"2026-01-01T00:00:00Z\"}\n";
        let p = parse(out);
        assert_eq!(p.facts.arch, "x86_64");
        assert_eq!(p.facts.vcpus, 64);
        assert_eq!(p.facts.memory, Memory::from_mib(1_056_000_000 / 1024));
        assert_eq!(p.facts.gpu_name, "H100");
        assert_eq!(p.facts.gpu_count, 2);
        assert_eq!(p.facts.gpu_memory, Memory::from_gib(80));
        assert_eq!(p.facts.gpu_vendor, Some(GpuVendor::Nvidia));
        assert_eq!(p.facts.driver, "550.54.15");
        let claim = p.claim.expect("claim");
        assert_eq!(claim.lineage, "L");
        assert_eq!(claim.address, "fleet.a[0]");
    }

    #[test]
    fn a_host_without_gpus_has_none() {
        let p = parse("arch=aarch64\nvcpus=8\nmem_kib=16000000\ndisk_free_kib=1000\n--- claim\n");
        assert_eq!(p.facts.gpu_count, 0);
        assert_eq!(p.facts.gpu_vendor, None);
        assert!(p.claim.is_none());
        assert!(p.claim_unreadable.is_none());
    }

    #[test]
    fn amd_tools_parse() {
        let amd = r#"[{"gpu":0,"asic":{"market_name":"AMD Instinct MI300X OAM"},"vram":{"size":{"value":196592,"unit":"MB"}}}]"#;
        let gpus = parse_amd_smi(amd);
        assert_eq!(gpus.len(), 1);
        assert_eq!(catalog_name(&gpus[0].raw_name), "MI300X");
        assert_eq!(gpus[0].memory_mib, 196_592);
        let rocm = r#"{"card0":{"Card series":"AMD Instinct MI250X","VRAM Total Memory (B)":"137438953472"},"system":{}}"#;
        let gpus = parse_rocm_smi(rocm);
        assert_eq!(gpus.len(), 1);
        assert_eq!(gpus[0].memory_mib, 131_072);
        assert_eq!(
            nominal_memory(&gpus[0].raw_name, gpus[0].memory_mib),
            Memory::from_gib(128)
        );
    }
}
