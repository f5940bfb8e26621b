//! Retention: which snapshots of a source to keep, and removing the others.
//!
//! The policy has restic's semantics (`cmd_forget`, `internal/restic/snapshot_policy.go`)
//! so that users' experience carries over. Per source name, snapshots are taken
//! newest first, and each rule keeps some independently of the others:
//!
//! - `last N`: the N newest.
//! - `hourly|daily|weekly|monthly|yearly N`: the newest snapshot of each hour (day,
//!   ISO week, month, year), for the N most recent periods that have one. Periods are
//!   taken in local time.
//! - `within D`: every snapshot no older than now minus D, where D is written like
//!   restic's `1y6m2d12h` (years, months, days, hours; also `w` weeks). Unlike restic
//!   (which counts back from the newest snapshot) the anchor is the current time, so
//!   one snapshot dated a year ahead by a bad clock cannot push every real one out.
//!
//! Snapshots dated more than [`FUTURE_TOLERANCE`] after now are kept, marked
//! `future_dated` for the caller to warn about, and never take a place of any rule
//! (issue 7, case 9).
//! - `tag T`: every snapshot tagged T.
//!
//! A snapshot is kept when any rule keeps it; the reasons are reported. An empty policy
//! is refused: forgetting everything is never what a missing flag meant.
//!
//! Forgetting only deletes snapshot files, so it never makes another snapshot
//! unreadable; the data goes with the next `prune`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Days, Months, TimeZone, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::id::Id;
use crate::repo::Repository;
use crate::snapshot::{self, Snapshot};

/// A `--keep-within` duration in calendar units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Within {
    pub years: u32,
    pub months: u32,
    pub days: u32,
    pub hours: u32,
}

impl Within {
    /// The oldest time still kept at time `now` (saturating: a duration longer than
    /// the calendar keeps everything).
    pub fn cutoff(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let months = self.years.saturating_mul(12).saturating_add(self.months);
        now.checked_sub_months(Months::new(months))
            .and_then(|t| t.checked_sub_days(Days::new(self.days as u64)))
            .and_then(|t| t.checked_sub_signed(chrono::Duration::hours(self.hours as i64)))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
}

impl FromStr for Within {
    type Err = Error;
    fn from_str(s: &str) -> Result<Within> {
        let bad = || {
            Error::Usage(format!(
                "`{s}` is not a duration for --keep-within; write it like 7d, 2w, 6m (months), 1y6m or 36h"
            ))
        };
        let mut w = Within::default();
        let mut num = String::new();
        for c in s.trim().chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            let n: u32 = num.parse().map_err(|_| bad())?;
            num.clear();
            // Checked: a huge number must be refused, not wrap to a short duration.
            let (field, n) = match c {
                'y' => (&mut w.years, Some(n)),
                'm' => (&mut w.months, Some(n)),
                'w' => (&mut w.days, n.checked_mul(7)),
                'd' => (&mut w.days, Some(n)),
                'h' => (&mut w.hours, Some(n)),
                _ => return Err(bad()),
            };
            *field = n.and_then(|n| field.checked_add(n)).ok_or_else(bad)?;
        }
        if !num.is_empty() || w == Within::default() {
            return Err(bad());
        }
        Ok(w)
    }
}

impl fmt::Display for Within {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, u) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n > 0 {
                write!(f, "{n}{u}")?;
            }
        }
        Ok(())
    }
}

/// A retention policy. Counts of 0 mean "this rule keeps nothing".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
    pub within: Option<Within>,
    pub tags: Vec<String>,
}

/// `[keep]` of the config file, or the `--keep-*` flags: a retention policy as
/// given, before [`Policy::from_keep`] checks it.
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Keep {
    /// The N newest snapshots.
    pub last: Option<u32>,
    /// The newest of each of the last N hours that have one.
    pub hourly: Option<u32>,
    /// The newest of each of the last N days that have one.
    pub daily: Option<u32>,
    /// The newest of each of the last N ISO weeks that have one.
    pub weekly: Option<u32>,
    /// The newest of each of the last N months that have one.
    pub monthly: Option<u32>,
    /// The newest of each of the last N years that have one.
    pub yearly: Option<u32>,
    /// Every snapshot newer than the newest minus this duration (`1y6m2d12h`).
    pub within: Option<String>,
    /// Every snapshot with one of these tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

impl Keep {
    /// Whether no rule is given at all.
    pub fn is_empty(&self) -> bool {
        *self == Keep::default()
    }
}

impl Policy {
    /// The policy of `cbsnap forget`: the `--keep-*` flags when any is given (they
    /// replace the config's `[keep]` as a whole, never merge with it), else the
    /// config's `[keep]`. [`Error::Usage`] for a bad `within` duration.
    pub fn resolve(flags: &Keep, config: &Keep) -> Result<Policy> {
        if flags.is_empty() {
            Policy::from_keep(config)
        } else {
            Policy::from_keep(flags)
        }
    }

    /// The policy `k` gives; rules it leaves out keep nothing.
    pub fn from_keep(k: &Keep) -> Result<Policy> {
        Ok(Policy {
            last: k.last.unwrap_or(0),
            hourly: k.hourly.unwrap_or(0),
            daily: k.daily.unwrap_or(0),
            weekly: k.weekly.unwrap_or(0),
            monthly: k.monthly.unwrap_or(0),
            yearly: k.yearly.unwrap_or(0),
            within: k.within.as_deref().map(str::parse).transpose()?,
            tags: k.tags.clone(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.last == 0
            && self.hourly == 0
            && self.daily == 0
            && self.weekly == 0
            && self.monthly == 0
            && self.yearly == 0
            && self.within.is_none()
            && self.tags.is_empty()
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        for (n, what) in [
            (self.last, "last"),
            (self.hourly, "hourly"),
            (self.daily, "daily"),
            (self.weekly, "weekly"),
            (self.monthly, "monthly"),
            (self.yearly, "yearly"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        if let Some(w) = &self.within {
            parts.push(format!("all within {w}"));
        }
        for t in &self.tags {
            parts.push(format!("tagged {t}"));
        }
        f.write_str(&parts.join(", "))
    }
}

/// One snapshot as the policy sees it.
pub struct Item<'a> {
    pub id: Id,
    pub time: DateTime<Utc>,
    pub tags: &'a [String],
}

/// How far past the current time a snapshot may be dated before it counts as
/// future-dated: clocks of hosts sharing a repository differ by seconds, not minutes.
pub const FUTURE_TOLERANCE: chrono::Duration = chrono::Duration::minutes(10);

/// The verdict on one snapshot.
#[derive(Clone, Debug, Serialize)]
pub struct Decision {
    pub id: Id,
    pub time: DateTime<Utc>,
    pub keep: bool,
    /// Dated after now (+ [`FUTURE_TOLERANCE`]): kept, counted by no rule; the caller
    /// warns (a host with a wrong clock took it).
    pub future_dated: bool,
    /// Why it is kept: "last", "daily", "within 7d", "tag nightly", …
    pub reasons: Vec<String>,
}

/// Apply `policy` to the snapshots of one source at time `now`. Returns one decision
/// per item, newest first: future-dated ones first, kept. Periods are cut in the time
/// zone `tz`.
pub fn apply<Tz: TimeZone>(
    policy: &Policy,
    items: &[Item<'_>],
    tz: &Tz,
    now: DateTime<Utc>,
) -> Vec<Decision> {
    let mut order: Vec<&Item<'_>> = items.iter().collect();
    order.sort_by(|a, b| b.time.cmp(&a.time).then(b.id.cmp(&a.id)));
    let horizon = now.checked_add_signed(FUTURE_TOLERANCE).unwrap_or(now);
    let split = order.partition_point(|i| i.time > horizon);
    let mut out: Vec<Decision> = order[..split]
        .iter()
        .map(|i| Decision {
            id: i.id,
            time: i.time,
            keep: true,
            future_dated: true,
            reasons: vec!["future-dated".into()],
        })
        .collect();
    let order = &order[split..];
    type Bucket<Tz> = fn(&DateTime<Tz>, usize) -> i64;
    let rules: [(&str, u32, Bucket<Tz>); 6] = [
        ("last", policy.last, |_, nr| nr as i64),
        ("hourly", policy.hourly, |t, _| {
            day_number(t) * 100 + t.hour() as i64
        }),
        ("daily", policy.daily, |t, _| day_number(t)),
        ("weekly", policy.weekly, |t, _| {
            let w = t.iso_week();
            w.year() as i64 * 100 + w.week() as i64
        }),
        ("monthly", policy.monthly, |t, _| {
            t.year() as i64 * 100 + t.month() as i64
        }),
        ("yearly", policy.yearly, |t, _| t.year() as i64),
    ];
    let mut left: Vec<u32> = rules.iter().map(|r| r.1).collect();
    let mut last_bucket: Vec<Option<i64>> = vec![None; rules.len()];
    let cutoff = policy.within.as_ref().map(|w| w.cutoff(now));
    for (nr, item) in order.iter().enumerate() {
        let mut reasons = Vec::new();
        let local = item.time.with_timezone(tz);
        for (i, (what, _, bucket)) in rules.iter().enumerate() {
            if left[i] == 0 {
                continue;
            }
            let b = bucket(&local, nr);
            if last_bucket[i] != Some(b) {
                last_bucket[i] = Some(b);
                left[i] -= 1;
                reasons.push((*what).to_string());
            }
        }
        if let (Some(c), Some(w)) = (cutoff, &policy.within) {
            if item.time >= c {
                reasons.push(format!("within {w}"));
            }
        }
        for t in &policy.tags {
            if item.tags.contains(t) {
                reasons.push(format!("tag {t}"));
            }
        }
        out.push(Decision {
            id: item.id,
            time: item.time,
            keep: !reasons.is_empty(),
            future_dated: false,
            reasons,
        });
    }
    out
}

fn day_number<Tz: TimeZone>(t: &DateTime<Tz>) -> i64 {
    t.year() as i64 * 10_000 + t.month() as i64 * 100 + t.day() as i64
}

/// The decisions for one source name.
#[derive(Debug, Serialize)]
pub struct Group {
    pub name: String,
    pub decisions: Vec<Decision>,
}

/// Apply `policy` to every source in `names` (all sources when empty), in local time,
/// at the current time. Decisions with `future_dated` set are for the caller to warn
/// about.
pub fn plan(
    all: &[(Id, Snapshot)],
    names: &[String],
    project: Option<&str>,
    policy: &Policy,
) -> Result<Vec<Group>> {
    if policy.is_empty() {
        return Err(Error::Usage(
            "say what to keep: --keep-last N, --keep-hourly/daily/weekly/monthly/yearly N, --keep-within 30d or --keep-tag T, or a [keep] table in the config file. Without a policy forget removes nothing".into(),
        ));
    }
    for n in names {
        if !all
            .iter()
            .any(|(_, s)| snapshot::name_matches(s, n, project))
        {
            // The resolver's error lists the sources that exist.
            snapshot::resolve(all, n, project)?;
        }
    }
    let mut groups: BTreeMap<&str, Vec<Item<'_>>> = BTreeMap::new();
    for (id, s) in all {
        if names.is_empty() || names.iter().any(|n| snapshot::name_matches(s, n, project)) {
            groups.entry(&s.name).or_default().push(Item {
                id: *id,
                time: s.time,
                tags: &s.tags,
            });
        }
    }
    Ok(groups
        .into_iter()
        .map(|(name, items)| Group {
            name: name.to_string(),
            decisions: apply(policy, &items, &chrono::Local, Utc::now()),
        })
        .collect())
}

/// Delete snapshot files. Each removal is made durable before returning; a crash
/// midway leaves some of them, which the next `forget` removes.
pub fn remove(repo: &Repository, ids: &[Id]) -> Result<()> {
    if !ids.is_empty() {
        repo.check_lock()?;
    }
    for id in ids {
        repo.storage()
            .delete(&crate::repo::snapshot_key(id))
            .map_err(|e| repo.storage_error("delete snapshot", e))?;
    }
    match repo.local_root() {
        Some(_) => {
            let dir = repo.snapshots_dir();
            fsutil::fsync_dir(&dir).ctx(|| format!("fsync {}", dir.display()))
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(times: &[&str]) -> Vec<(Id, DateTime<Utc>)> {
        times
            .iter()
            .map(|t| {
                let time = DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc);
                (Id::hash(t.as_bytes()), time)
            })
            .collect()
    }

    fn kept(policy: &Policy, times: &[&str], tags: &[(usize, &str)]) -> Vec<String> {
        let v = items(times);
        let tag_lists: Vec<Vec<String>> = (0..v.len())
            .map(|i| {
                tags.iter()
                    .filter(|(j, _)| *j == i)
                    .map(|(_, t)| t.to_string())
                    .collect()
            })
            .collect();
        let its: Vec<Item<'_>> = v
            .iter()
            .zip(&tag_lists)
            .map(|((id, time), tags)| Item {
                id: *id,
                time: *time,
                tags,
            })
            .collect();
        apply(policy, &its, &Utc, now())
            .into_iter()
            .filter(|d| d.keep)
            .map(|d| d.time.format("%Y-%m-%dT%H:%M").to_string())
            .collect()
    }

    const TIMES: &[&str] = &[
        "2025-12-30T10:00:00Z",
        "2025-12-31T09:00:00Z",
        "2025-12-31T23:00:00Z",
        "2026-01-01T01:00:00Z",
        "2026-01-01T01:30:00Z",
        "2026-01-01T02:00:00Z",
        "2026-01-02T12:00:00Z",
        "2026-01-09T12:00:00Z",
        "2026-02-01T00:00:00Z",
    ];

    #[test]
    fn keep_last_keeps_the_newest_n() {
        let p = Policy {
            last: 2,
            ..Policy::default()
        };
        assert_eq!(
            kept(&p, TIMES, &[]),
            ["2026-02-01T00:00", "2026-01-09T12:00"]
        );
    }

    #[test]
    fn daily_keeps_newest_of_each_day_for_n_days() {
        let p = Policy {
            daily: 4,
            ..Policy::default()
        };
        // Days with snapshots, newest first: 02-01, 01-09, 01-02, 01-01 (newest of
        // the three that day is 02:00); 12-31 and 12-30 are beyond 4 days.
        assert_eq!(
            kept(&p, TIMES, &[]),
            [
                "2026-02-01T00:00",
                "2026-01-09T12:00",
                "2026-01-02T12:00",
                "2026-01-01T02:00"
            ]
        );
    }

    #[test]
    fn hourly_distinguishes_hours_not_minutes() {
        let p = Policy {
            hourly: 5,
            ..Policy::default()
        };
        let k = kept(&p, TIMES, &[]);
        assert!(k.contains(&"2026-01-01T01:30".to_string()), "{k:?}");
        assert!(!k.contains(&"2026-01-01T01:00".to_string()), "{k:?}");
        assert_eq!(k.len(), 5);
    }

    #[test]
    fn weekly_uses_iso_weeks_and_yearly_calendar_years() {
        let p = Policy {
            weekly: 3,
            ..Policy::default()
        };
        // ISO week 2026-W01 runs 2025-12-29..2026-01-04: one snapshot for all of it.
        assert_eq!(
            kept(&p, TIMES, &[]),
            ["2026-02-01T00:00", "2026-01-09T12:00", "2026-01-02T12:00"]
        );
        let p = Policy {
            yearly: 5,
            ..Policy::default()
        };
        assert_eq!(
            kept(&p, TIMES, &[]),
            ["2026-02-01T00:00", "2025-12-31T23:00"]
        );
        let p = Policy {
            monthly: 2,
            ..Policy::default()
        };
        assert_eq!(
            kept(&p, TIMES, &[]),
            ["2026-02-01T00:00", "2026-01-09T12:00"]
        );
    }

    #[test]
    fn rules_combine_and_report_reasons() {
        let p = Policy {
            last: 1,
            daily: 1,
            tags: vec!["keep".into()],
            ..Policy::default()
        };
        let v = items(TIMES);
        let tags = vec!["keep".to_string()];
        let none: Vec<String> = vec![];
        let its: Vec<Item<'_>> = v
            .iter()
            .enumerate()
            .map(|(i, (id, time))| Item {
                id: *id,
                time: *time,
                tags: if i == 0 { &tags } else { &none },
            })
            .collect();
        let d = apply(&p, &its, &Utc, now());
        assert_eq!(d[0].reasons, ["last", "daily"]);
        let oldest = d.last().unwrap();
        assert!(oldest.keep);
        assert_eq!(oldest.reasons, ["tag keep"]);
        assert_eq!(d.iter().filter(|d| d.keep).count(), 2);
    }

    /// The tests' "now": just after the newest of [`TIMES`].
    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-02-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn within_counts_back_from_now() {
        let p = Policy {
            within: Some("8d".parse().unwrap()),
            ..Policy::default()
        };
        // Now 2026-02-01T00:00; cutoff 2026-01-24T00:00.
        assert_eq!(kept(&p, TIMES, &[]), ["2026-02-01T00:00"]);
        let p = Policy {
            within: Some("1m".parse().unwrap()),
            ..Policy::default()
        };
        // Cutoff 2026-01-01T00:00: the three snapshots of that day are in.
        assert_eq!(kept(&p, TIMES, &[]).len(), 6);
        let p = Policy {
            within: Some("1m1d".parse().unwrap()),
            ..Policy::default()
        };
        // Cutoff 2025-12-31T00:00 (one month, then one day, before the newest).
        assert_eq!(kept(&p, TIMES, &[]).len(), 8);
    }

    #[test]
    fn within_parses_restic_durations() {
        let w: Within = "1y6m2d12h".parse().unwrap();
        assert_eq!(
            w,
            Within {
                years: 1,
                months: 6,
                days: 2,
                hours: 12
            }
        );
        assert_eq!(w.to_string(), "1y6m2d12h");
        assert_eq!("2w".parse::<Within>().unwrap().days, 14);
        for bad in ["", "7", "d", "3x", "0d"] {
            assert!(bad.parse::<Within>().is_err(), "{bad}");
        }
    }

    /// Issue 7, case 15: a huge number is refused instead of wrapping around to a
    /// short duration; one that fits keeps everything.
    #[test]
    fn huge_durations_do_not_wrap() {
        for bad in ["700000000w", "4294967295d1d", "99999999999999999999d"] {
            assert!(
                matches!(bad.parse::<Within>(), Err(Error::Usage(_))),
                "{bad}"
            );
        }
        let p = Policy {
            within: Some("4294967295y".parse().unwrap()),
            ..Policy::default()
        };
        assert_eq!(kept(&p, TIMES, &[]).len(), TIMES.len());
    }

    /// Issue 7, case 9: one snapshot dated a year ahead keeps its place, is marked,
    /// and takes no place from the real ones.
    #[test]
    fn a_future_dated_snapshot_counts_against_nothing() {
        let mut times = TIMES.to_vec();
        times.push("2027-02-01T00:00:00Z");
        let p = Policy {
            within: Some("8d".parse().unwrap()),
            ..Policy::default()
        };
        assert_eq!(
            kept(&p, &times, &[]),
            ["2027-02-01T00:00", "2026-02-01T00:00"]
        );
        let p = Policy {
            last: 2,
            ..Policy::default()
        };
        assert_eq!(
            kept(&p, &times, &[]),
            ["2027-02-01T00:00", "2026-02-01T00:00", "2026-01-09T12:00"]
        );
        let v = items(&times);
        let its: Vec<Item<'_>> = v
            .iter()
            .map(|(id, time)| Item {
                id: *id,
                time: *time,
                tags: &[],
            })
            .collect();
        let d = apply(&p, &its, &Utc, now());
        assert!(d[0].future_dated && d[0].keep);
        assert!(d[1..].iter().all(|d| !d.future_dated));
    }

    #[test]
    fn keep_flags_replace_the_config_policy_as_a_whole() {
        let config = Keep {
            daily: Some(7),
            tags: vec!["pin".into()],
            ..Default::default()
        };
        let from_config = Policy::resolve(&Keep::default(), &config).unwrap();
        assert_eq!((from_config.daily, from_config.last), (7, 0));
        assert_eq!(from_config.tags, vec!["pin".to_string()]);
        let flags = Keep {
            last: Some(3),
            ..Default::default()
        };
        let from_flags = Policy::resolve(&flags, &config).unwrap();
        assert_eq!((from_flags.daily, from_flags.last), (0, 3));
        assert!(
            from_flags.tags.is_empty(),
            "the config's tags are not merged in"
        );
        let bad = Keep {
            within: Some("soon".into()),
            ..Default::default()
        };
        assert!(matches!(
            Policy::resolve(&bad, &config),
            Err(Error::Usage(_))
        ));
    }

    #[test]
    fn an_empty_policy_is_refused() {
        let e = plan(&[], &[], None, &Policy::default()).unwrap_err();
        assert!(matches!(e, Error::Usage(_)));
        assert!(Policy::from_keep(&Keep::default()).unwrap().is_empty());
    }
}
