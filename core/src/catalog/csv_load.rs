//! Reading catalog CSV files.
//!
//! The embedded snapshot and `--catalog FILE` share one format, [`super::CSV_HEADER`]'s columns,
//! so a team can hand-edit or generate its own catalog. A catalog is data a person may have
//! typed, so every bad row is reported with its line, its column and the value that is wrong,
//! never silently skipped: a skipped row would quietly change which offer a plan picks.
//! Lines starting with `#` are comments (the offers cache keeps its header on its first line).

use super::{CSV_HEADER, Offer, ProviderKind};
use crate::spec::{GpuVendor, Memory};

/// A catalog file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The file could not be read.
    #[error("cannot read catalog `{path}`")]
    Io {
        /// The catalog file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A row or the header is malformed.
    #[error("{origin}:{line}: {message}")]
    Malformed {
        /// The catalog file (or `embedded snapshot`).
        origin: String,
        /// 1-based line.
        line: usize,
        /// What is wrong and what was expected.
        message: String,
    },
}

/// Column positions, in [`CSV_HEADER`] order.
const PROVIDER: usize = 0;
const INSTANCE_TYPE: usize = 1;
const REGION: usize = 2;
const ZONE: usize = 3;
const GPU_VENDOR: usize = 4;
const GPU_NAME: usize = 5;
const GPU_COUNT: usize = 6;
const GPU_MEMORY: usize = 7;
const VCPUS: usize = 8;
const MEMORY: usize = 9;
const SPOT: usize = 10;
const PRICE: usize = 11;

pub(super) fn parse(text: &str, origin: &str) -> Result<Vec<Offer>, CatalogError> {
    let malformed = |line: u64, message: String| CatalogError::Malformed {
        origin: origin.to_string(),
        line: usize::try_from(line).unwrap_or(usize::MAX),
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .trim(csv::Trim::All)
        // `#` lines are comments: the offers cache keeps its header on one (`source`).
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let columns: Vec<&str> = CSV_HEADER.split(',').collect();
    let mut records = reader.records();

    match records.next() {
        None => {
            return Err(malformed(
                1,
                format!("the catalog is empty; expected the header `{CSV_HEADER}`"),
            ));
        }
        Some(Err(e)) => return Err(malformed(line_of(&e), csv_message(&e, columns.len()))),
        Some(Ok(header)) => {
            if header.iter().ne(columns.iter().copied()) {
                let found = header.iter().collect::<Vec<_>>().join(",");
                return Err(malformed(
                    1,
                    format!("unexpected header `{found}`; expected `{CSV_HEADER}`"),
                ));
            }
        }
    }

    let mut offers = Vec::new();
    for record in records {
        let record = record.map_err(|e| malformed(line_of(&e), csv_message(&e, columns.len())))?;
        let line = record.position().map_or(0, csv::Position::line);
        let offer = offer(&record).map_err(|(col, why)| {
            let value = record.get(col).unwrap_or("");
            malformed(line, format!("column `{}`: `{value}` {why}", columns[col]))
        })?;
        offers.push(offer);
    }
    Ok(offers)
}

/// The 1-based line a csv error is on (1 when it has none).
fn line_of(e: &csv::Error) -> u64 {
    e.position().map_or(1, csv::Position::line)
}

fn csv_message(e: &csv::Error, expected: usize) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths { len, .. } => {
            format!("{len} columns, expected {expected} (`{CSV_HEADER}`)")
        }
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_string(),
        _ => format!("unreadable CSV: {e}"),
    }
}

/// One offer from a record; on error, the column and why its value is wrong.
fn offer(r: &csv::StringRecord) -> Result<Offer, (usize, String)> {
    let text = |col: usize| r.get(col).unwrap_or("");
    let provider = ProviderKind::parse(text(PROVIDER)).ok_or((
        PROVIDER,
        "is not a provider; expected aws, gcp, azure or baremetal".to_string(),
    ))?;
    let nonempty = |col: usize| {
        let s = text(col);
        if s.is_empty() {
            Err((col, "is empty; a value is required".to_string()))
        } else {
            Ok(s.to_string())
        }
    };
    let gpu_vendor = match text(GPU_VENDOR) {
        "" => None,
        v => Some(
            [GpuVendor::Nvidia, GpuVendor::Amd]
                .into_iter()
                .find(|g| g.as_str() == v)
                .ok_or((
                    GPU_VENDOR,
                    "is not a GPU vendor; expected nvidia, amd, or empty for no GPU".to_string(),
                ))?,
        ),
    };
    // Without a GPU the GPU columns may be left empty.
    let count_or_zero = |col: usize| -> Result<u32, (usize, String)> {
        match text(col) {
            "" if gpu_vendor.is_none() => Ok(0),
            s => s
                .parse()
                .map_err(|_| (col, "is not a whole number".to_string())),
        }
    };
    let gib = |col: usize| -> Result<Memory, (usize, String)> {
        match text(col) {
            "" if col == GPU_MEMORY && gpu_vendor.is_none() => Ok(Memory::default()),
            s => match s.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => Ok(Memory::from_gib_f64(v)),
                _ => Err((
                    col,
                    "is not a size in GiB (a non-negative number)".to_string(),
                )),
            },
        }
    };
    let gpu_count = count_or_zero(GPU_COUNT)?;
    let gpu_name = text(GPU_NAME).to_string();
    match (gpu_vendor, gpu_count, gpu_name.is_empty()) {
        (None, 0, true) | (Some(_), 1.., false) => {}
        (None, _, _) => {
            return Err((
                GPU_VENDOR,
                "is empty but the row has GPUs; give nvidia or amd".to_string(),
            ));
        }
        (Some(_), 0, _) => {
            return Err((
                GPU_COUNT,
                "is 0 but the row names a GPU vendor; leave gpu_vendor empty for no GPU"
                    .to_string(),
            ));
        }
        (Some(_), _, true) => return Err((GPU_NAME, "is empty but the row has GPUs".to_string())),
    }
    let price_per_hour = match text(PRICE).parse::<f64>() {
        Ok(p) if p.is_finite() && p >= 0.0 => p,
        _ => {
            return Err((
                PRICE,
                "is not a price in USD per hour (a non-negative number)".to_string(),
            ));
        }
    };
    Ok(Offer {
        provider,
        region: nonempty(REGION)?,
        zone: text(ZONE).to_string(),
        instance_type: nonempty(INSTANCE_TYPE)?,
        gpu_vendor,
        gpu_name,
        gpu_count,
        gpu_memory: gib(GPU_MEMORY)?,
        vcpus: text(VCPUS)
            .parse()
            .map_err(|_| (VCPUS, "is not a whole number".to_string()))?,
        memory: gib(MEMORY)?,
        spot: match text(SPOT) {
            "true" => true,
            "false" => false,
            _ => return Err((SPOT, "is not true or false".to_string())),
        },
        price_per_hour,
    })
}
