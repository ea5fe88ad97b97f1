//! Wall-clock UTC dates for file names and reports, without a date crate.

/// A UTC calendar time.
pub struct UtcTime {
    /// Year (proleptic Gregorian).
    pub year: i64,
    /// Month 1–12.
    pub month: i64,
    /// Day of month 1–31.
    pub day: i64,
    /// Hour 0–23.
    pub hour: i64,
    /// Minute 0–59.
    pub minute: i64,
    /// Second 0–59.
    pub second: i64,
}

/// The UTC calendar time of `secs` seconds since the Unix epoch (Hinnant's civil_from_days).
pub fn from_unix(secs: u64) -> UtcTime {
    let secs = secs as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    UtcTime {
        year: yoe + era * 400 + i64::from(month <= 2),
        month,
        day,
        hour: rem / 3600,
        minute: rem / 60 % 60,
        second: rem % 60,
    }
}
