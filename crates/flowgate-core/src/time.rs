//! UTC calendar fields from epoch time, without a date-time dependency.

/// A civil UTC date and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millis: u32,
}

impl UtcTime {
    /// Howard Hinnant's `civil_from_days`.
    pub fn from_epoch_ms(ms: u64) -> Self {
        let secs = (ms / 1000) as i64;
        let millis = (ms % 1000) as u32;
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400) as u32;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        UtcTime {
            year,
            month,
            day,
            hour: sod / 3600,
            minute: sod / 60 % 60,
            second: sod % 60,
            millis,
        }
    }

    /// Network Watcher's hour partition of a blob path: `y=2024/m=03/d=04/h=10/`.
    pub fn hour_partition(&self) -> String {
        format!(
            "y={}/m={:02}/d={:02}/h={:02}/",
            self.year, self.month, self.day, self.hour
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar() {
        let t = UtcTime::from_epoch_ms(951_782_400_000);
        assert_eq!((t.year, t.month, t.day), (2000, 2, 29));
        assert_eq!(
            UtcTime::from_epoch_ms(1_709_546_520_000).hour_partition(),
            "y=2024/m=03/d=04/h=10/"
        );
    }
}
