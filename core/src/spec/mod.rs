//! The resource grammar, dstack's, so its users feel at home.
//!
//! A range is `a..b` with either side open (`8`, `8..`, `..8`, `8..16`). Memory takes `MB`, `GB`,
//! `TB` (a bare number is GB; 1 GB = 1024 MB, as dstack and the clouds' catalogs count). A GPU
//! spec is `:`-separated tokens in any order, each a vendor (`nvidia`, `amd`), a name or comma
//! list of names (`H100`, `A100,H100`), a memory (`80GB`, `24GB..`) or a count (`8`, `1..8`).
//!
//! Every type here round-trips: `parse(display(x)) == x` (property-tested). Errors carry the
//! byte offset within the parsed string so that `config` can point at the exact column.

use serde::{Deserialize, Serialize};
use std::fmt;

mod parse;
#[cfg(test)]
mod tests;

pub use parse::SpecError;

/// An inclusive range with either side open. `Range { min: None, max: None }` matches anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Range<T> {
    /// Lower bound, inclusive; `None` is open.
    pub min: Option<T>,
    /// Upper bound, inclusive; `None` is open.
    pub max: Option<T>,
}

impl<T: PartialOrd + Copy> Range<T> {
    /// A range holding exactly `v`.
    pub fn exactly(v: T) -> Self {
        Range {
            min: Some(v),
            max: Some(v),
        }
    }

    /// `v..`, open above.
    pub fn at_least(v: T) -> Self {
        Range {
            min: Some(v),
            max: None,
        }
    }

    /// Whether `v` lies within the range, bounds included.
    pub fn contains(&self, v: T) -> bool {
        self.min.is_none_or(|m| v >= m) && self.max.is_none_or(|m| v <= m)
    }
}

/// A quantity of memory or disk, held in MiB (the grammar's `MB`; `GB` = 1024 MB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Memory {
    mib: u64,
}

impl Memory {
    /// From MiB.
    pub const fn from_mib(mib: u64) -> Self {
        Memory { mib }
    }
    /// From GiB.
    pub const fn from_gib(gib: u64) -> Self {
        Memory { mib: gib * 1024 }
    }
    /// From a fractional GiB figure such as a catalog's `memory_gib` (rounded to the MiB).
    pub fn from_gib_f64(gib: f64) -> Self {
        Memory {
            mib: (gib * 1024.0).round().max(0.0) as u64,
        }
    }
    /// In MiB.
    pub const fn mib(self) -> u64 {
        self.mib
    }
    /// In GiB, fractional.
    pub fn gib(self) -> f64 {
        self.mib as f64 / 1024.0
    }
}

/// A GPU vendor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuVendor {
    /// NVIDIA.
    Nvidia,
    /// AMD.
    Amd,
}

impl GpuVendor {
    /// The lowercase name used in fleet files, the catalog and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            GpuVendor::Nvidia => "nvidia",
            GpuVendor::Amd => "amd",
        }
    }
}

/// What a fleet asks of each node's GPUs: `gpu = "nvidia:A100,H100:80GB:8"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GpuSpec {
    /// Required vendor, if any.
    pub vendor: Option<GpuVendor>,
    /// Accepted GPU names (any of them); empty accepts any name. Matched case-insensitively.
    pub names: Vec<String>,
    /// Memory per GPU.
    pub memory: Option<Range<Memory>>,
    /// Number of GPUs per node; `1` when the spec names none (dstack's default).
    pub count: Range<u32>,
}

/// Everything a fleet asks of one node. Built from a fleet's `resources` block.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Resources {
    /// vCPUs; default `2..`.
    pub cpu: Range<u32>,
    /// Memory; default `8GB..`.
    pub memory: Range<Memory>,
    /// Root disk; default `100GB..`.
    pub disk: Range<Memory>,
    /// GPUs; `None` requires none (and accepts any).
    pub gpu: Option<GpuSpec>,
    /// Total GPU memory across the node's GPUs (`gpu_total_memory = "640GB.."`).
    pub gpu_total_memory: Option<Range<Memory>>,
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            cpu: Range::at_least(2),
            memory: Range::at_least(Memory::from_gib(8)),
            disk: Range::at_least(Memory::from_gib(100)),
            gpu: None,
            gpu_total_memory: None,
        }
    }
}

/// Parse a cpu count range: `4`, `2..`, `..64`, `8..16`.
pub fn parse_count(s: &str) -> Result<Range<u32>, SpecError> {
    parse::count_range(s)
}

/// Parse a memory or disk range: `24GB..`, `1TB`, `512MB..2GB`, `80` (GB).
pub fn parse_memory_range(s: &str) -> Result<Range<Memory>, SpecError> {
    parse::memory_range(s)
}

/// Parse one memory quantity: `80GB`, `1TB`, `512MB`, `16` (GB).
pub fn parse_memory(s: &str) -> Result<Memory, SpecError> {
    parse::memory(s)
}

/// Parse a GPU spec: `H100:8`, `A100,H100:80GB:1..8`, `nvidia:24GB..`.
pub fn parse_gpu(s: &str) -> Result<GpuSpec, SpecError> {
    parse::gpu(s)
}

impl fmt::Display for Memory {
    /// The largest unit that divides the quantity exactly: `1TB`, `80GB`, `512MB`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const GB: u64 = 1024;
        const TB: u64 = 1024 * 1024;
        let m = self.mib;
        if m != 0 && m.is_multiple_of(TB) {
            write!(f, "{}TB", m / TB)
        } else if m.is_multiple_of(GB) {
            write!(f, "{}GB", m / GB)
        } else {
            write!(f, "{m}MB")
        }
    }
}

impl<T: fmt::Display + PartialEq> fmt::Display for Range<T> {
    /// `8`, `8..`, `..8`, `8..16`; a fully open range prints as `..`... which the parser refuses,
    /// so callers print open ranges as "any" themselves.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.min, &self.max) {
            (Some(a), Some(b)) if a == b => write!(f, "{a}"),
            (Some(a), Some(b)) => write!(f, "{a}..{b}"),
            (Some(a), None) => write!(f, "{a}.."),
            (None, Some(b)) => write!(f, "..{b}"),
            (None, None) => write!(f, ".."),
        }
    }
}

impl fmt::Display for GpuSpec {
    /// Canonical order: vendor, names, memory, count — `nvidia:A100,H100:80GB:8`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if let Some(v) = self.vendor {
            parts.push(v.as_str().to_string());
        }
        if !self.names.is_empty() {
            parts.push(self.names.join(","));
        }
        if let Some(m) = &self.memory {
            parts.push(m.to_string());
        }
        parts.push(self.count.to_string());
        f.write_str(&parts.join(":"))
    }
}

macro_rules! serde_via_display {
    ($t:ty, $parse:path) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}
serde_via_display!(Memory, parse_memory);
serde_via_display!(Range<Memory>, parse_memory_range);
serde_via_display!(Range<u32>, parse_count);
serde_via_display!(GpuSpec, parse_gpu);

impl Serialize for Resources {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Resources", 5)?;
        st.serialize_field("cpu", &self.cpu)?;
        st.serialize_field("memory", &self.memory)?;
        st.serialize_field("disk", &self.disk)?;
        st.serialize_field("gpu", &self.gpu)?;
        st.serialize_field("gpu_total_memory", &self.gpu_total_memory)?;
        st.end()
    }
}
