//! Property tests: the laws every diff and sync obeys.

use diffsync::{Adapter, Diff, Options};
use diffsync_tests::Inventory;
use proptest::prelude::*;

type Intf = (String, String, u32);
type Dev = (String, String, Vec<Intf>);
type SiteData = (String, String, Vec<Dev>);

fn inventory_data() -> impl Strategy<Value = Vec<SiteData>> {
    let intf = (
        0..4u8,
        prop::sample::select(vec!["uplink", "to-sw", "", "a\nb"]),
        prop::sample::select(vec![1500u32, 9000]),
    )
        .prop_map(|(n, d, m)| (format!("eth{n}"), d.to_string(), m));
    let dev = (
        0..3u8,
        prop::sample::select(vec!["router", "edge"]),
        prop::collection::vec(intf, 0..4),
    );
    let site = (
        0..4u8,
        prop::sample::select(vec!["east", "west"]),
        prop::collection::vec(dev, 0..3),
    );
    prop::collection::vec(site, 0..4).prop_map(|sites| {
        let mut seen_sites = std::collections::HashSet::new();
        sites
            .into_iter()
            .filter(|(s, _, _)| seen_sites.insert(*s))
            .map(|(s, region, devs)| {
                let site = format!("s{s}");
                let mut seen = std::collections::HashSet::new();
                let devs = devs
                    .into_iter()
                    .filter(|(d, _, _)| seen.insert(*d))
                    .map(|(d, role, intfs)| {
                        let mut seen = std::collections::HashSet::new();
                        let intfs = intfs.into_iter().filter(|i| seen.insert(i.0.clone())).collect();
                        (format!("{site}-d{d}"), role.to_string(), intfs)
                    })
                    .collect();
                (site, region.to_string(), devs)
            })
            .collect()
    })
}

fn build(name: &str, data: &[SiteData]) -> Inventory {
    let intfs: Vec<Vec<Vec<diffsync_tests::IntfSpec<'_>>>> = data
        .iter()
        .map(|(_, _, devs)| {
            devs.iter()
                .map(|(_, _, i)| i.iter().map(|(n, d, m)| (n.as_str(), d.as_str(), *m)).collect())
                .collect()
        })
        .collect();
    let devs: Vec<Vec<diffsync_tests::DevSpec<'_>>> = data
        .iter()
        .zip(&intfs)
        .map(|((_, _, devs), intfs)| {
            devs.iter()
                .zip(intfs)
                .map(|((d, role, _), i)| (d.as_str(), role.as_str(), None, i.as_slice()))
                .collect()
        })
        .collect();
    let sites: Vec<diffsync_tests::SiteSpec<'_>> = data
        .iter()
        .zip(&devs)
        .map(|((s, r, _), d)| (s.as_str(), r.as_str(), d.as_slice()))
        .collect();
    Inventory::new(name, &sites)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn after_sync_from_the_diff_is_empty(a in inventory_data(), b in inventory_data()) {
        let source = build("a", &a);
        let mut target = build("b", &b);
        target.sync_from(&source).unwrap();
        let again = target.diff_from(&source).unwrap();
        prop_assert!(!again.has_diffs(), "{}", again);
        prop_assert_eq!(target.store.count_all(), source.store.count_all());
    }

    #[test]
    fn summary_accounts_for_every_model(a in inventory_data(), b in inventory_data()) {
        let source = build("a", &a);
        let target = build("b", &b);
        let s = target.diff_from(&source).unwrap().summary();
        prop_assert_eq!(s.skip, 0);
        prop_assert_eq!(
            s.create + s.delete + 2 * (s.update + s.no_change),
            source.store.count_all() + target.store.count_all()
        );
        prop_assert_eq!(s.create + s.update + s.no_change, source.store.count_all());
        prop_assert_eq!(s.delete + s.update + s.no_change, target.store.count_all());
    }

    #[test]
    fn reverse_undoes_and_json_round_trips(a in inventory_data(), b in inventory_data()) {
        let source = build("a", &a);
        let original = build("b", &b);
        let mut target = original.clone();
        let diff = target.diff_from(&source).unwrap();
        let back: Diff = serde_json::from_str(&serde_json::to_string(&diff).unwrap()).unwrap();
        prop_assert_eq!(&back, &diff);
        prop_assert_eq!(diff.reversed().reversed(), diff.clone());
        target.sync_diff_from(&source, &diff, &mut Options::new()).unwrap();
        target.sync_diff(&back.reversed(), &mut Options::new()).unwrap();
        let restored = target.diff_from(&original).unwrap();
        prop_assert!(!restored.has_diffs(), "{}", restored);
    }
}
