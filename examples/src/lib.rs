//! Shared code of the examples and benchmarks: the inventory workload's models
//! (`../shared/bench` layout), an in-memory adapter, the JSON loader, and a
//! deterministic in-memory generator for microbenchmarks.

mod reader;

pub use compact_str::CompactString as Name;
use diffsync::{DiffModel, LocalStore, MemoryAdapter};
use serde::{Deserialize, Serialize};

/// A site (`site` in the workload).
#[derive(DiffModel, Clone, Debug, PartialEq)]
#[diffsync(name = "site", children(Device))]
pub struct Site {
    /// Site name.
    #[diffsync(id)]
    pub name: Name,
    /// Region.
    pub region: Name,
    /// Status.
    pub status: Name,
}

/// A device.
#[derive(DiffModel, Clone, Debug, PartialEq)]
#[diffsync(name = "device", children(Interface))]
pub struct Device {
    /// Owning site.
    #[diffsync(id)]
    pub site: Name,
    /// Device name.
    #[diffsync(id)]
    pub name: Name,
    /// Role.
    pub role: Name,
    /// Hardware model.
    pub model: Name,
    /// Serial number.
    pub serial: Name,
    /// Status.
    pub status: Name,
}

/// An interface.
#[derive(DiffModel, Clone, Debug, PartialEq, Deserialize, Serialize)]
#[diffsync(name = "interface")]
pub struct Interface {
    /// Owning site.
    #[diffsync(id)]
    pub site: Name,
    /// Owning device.
    #[diffsync(id)]
    pub device: Name,
    /// Interface name.
    #[diffsync(id)]
    pub name: Name,
    /// Description.
    pub description: Name,
    /// MTU.
    pub mtu: i64,
    /// Admin state.
    pub enabled: bool,
    /// Mode.
    pub mode: Name,
}

/// The workload file: `{"site": [...]}`.
#[derive(Deserialize, Serialize)]
pub struct File {
    /// Sites with nested devices and interfaces.
    pub site: Vec<SiteRec>,
}

/// A site record with its devices.
#[derive(Deserialize, Serialize)]
pub struct SiteRec {
    /// Site name.
    pub name: Name,
    /// Region.
    pub region: Name,
    /// Status.
    pub status: Name,
    /// Devices.
    #[serde(default)]
    pub devices: Vec<DeviceRec>,
}

/// A device record with its interfaces.
#[derive(Deserialize, Serialize)]
pub struct DeviceRec {
    /// Owning site.
    pub site: Name,
    /// Device name.
    pub name: Name,
    /// Role.
    pub role: Name,
    /// Hardware model.
    pub model: Name,
    /// Serial number.
    pub serial: Name,
    /// Status.
    pub status: Name,
    /// Interfaces.
    #[serde(default)]
    pub interfaces: Vec<Interface>,
}

/// Builds an in-memory adapter from parsed workload records.
pub fn build(name: &str, file: File) -> diffsync::Result<MemoryAdapter> {
    let mut store = LocalStore::new(name);
    for s in file.site {
        add_site(&mut store, s)?;
    }
    Ok(MemoryAdapter::with_store(name, &["site"], store))
}

/// Adds a site record with its devices and their interfaces.
fn add_site(store: &mut LocalStore, s: SiteRec) -> diffsync::Result<()> {
    let site = store.add(Site {
        name: s.name,
        region: s.region,
        status: s.status,
    })?;
    for d in s.devices {
        let device = store.add_under(
            site,
            Device {
                site: d.site,
                name: d.name,
                role: d.role,
                model: d.model,
                serial: d.serial,
                status: d.status,
            },
        )?;
        for i in d.interfaces {
            store.add_under(device, i)?;
        }
    }
    Ok(())
}

/// Loads a workload document (`{"site": [...]}`) straight into a new
/// in-memory adapter: each site, device and interface is added to the
/// store as soon as it is parsed, so no tree of the whole file is held
/// beside the store (what [`File`] + [`build`] does). A record's own
/// fields must come before its list of children, as in the workload's
/// layout; a store error (a duplicate key) is named with the line.
pub fn load(name: &str, json: &[u8]) -> Result<MemoryAdapter, serde_json::Error> {
    load_from(name, serde_json::Deserializer::from_slice(json))
}

/// [`load`] from a reader (a file): read 256 KiB at a time, each site
/// record parsed whole from the buffer (serde_json's slice parser, not its
/// reader, which goes a byte at a time) and added with its devices and
/// interfaces, so neither the file nor a tree of it is ever whole in
/// memory: a buffer and one site's records. Keys other than `site` are
/// skipped; an error (bad JSON, a duplicate key) is named with its line
/// and column in the input.
pub fn load_reader(name: &str, json: impl std::io::Read) -> Result<MemoryAdapter, serde_json::Error> {
    load_chunked(name, json, reader::CHUNK)
}

fn load_chunked(name: &str, json: impl std::io::Read, chunk: usize) -> Result<MemoryAdapter, serde_json::Error> {
    let mut input = reader::Chunks::new(json, chunk);
    let mut store = LocalStore::new(name);
    input.expect(b'{')?;
    let mut done = input.eat(b'}')?;
    while !done {
        let (key, _) = input.value::<String>()?;
        input.expect(b':')?;
        if key == "site" {
            input.expect(b'[')?;
            let mut end = input.eat(b']')?;
            while !end {
                let (site, at) = input.value::<SiteRec>()?;
                add_site(&mut store, site).map_err(|e| input.error(&e.to_string(), at))?;
                end = input.comma_or(b']')?;
            }
        } else {
            input.skip()?;
        }
        done = input.comma_or(b'}')?;
    }
    input.end()?;
    Ok(MemoryAdapter::with_store(name, &["site"], store))
}

fn load_from<'de, R: serde_json::de::Read<'de>>(
    name: &str,
    mut de: serde_json::Deserializer<R>,
) -> Result<MemoryAdapter, serde_json::Error> {
    use serde::de::DeserializeSeed;
    let mut store = LocalStore::new(name);
    stream::Document(&mut store).deserialize(&mut de)?;
    de.end()?;
    Ok(MemoryAdapter::with_store(name, &["site"], store))
}

/// The serde visitors of [`load`]: one per level of the document, each
/// adding what it reads to the store.
mod stream {
    use std::fmt;

    use diffsync::{Handle, LocalStore};
    use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

    use super::{Device, Interface, Name, Site};

    /// The document: `{"site": [...]}`.
    pub(super) struct Document<'a>(pub(super) &'a mut LocalStore);

    impl<'de> DeserializeSeed<'de> for Document<'_> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for Document<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(r#"{"site": [...]}"#)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<Field>()? {
                match key {
                    Field::Site => map.next_value_seed(Each(Records::Sites, &mut *self.0, None))?,
                    _ => map.next_value::<IgnoredAny>().map(|_| ())?,
                }
            }
            Ok(())
        }
    }

    /// A key of the document, read without an allocation (whether the
    /// parser can lend its text or not).
    #[derive(Clone, Copy, PartialEq, Eq, serde::Deserialize)]
    #[serde(field_identifier, rename_all = "lowercase")]
    enum Field {
        Site,
        Name,
        Region,
        Status,
        Devices,
        Role,
        Model,
        Serial,
        Interfaces,
        #[serde(other)]
        Other,
    }

    /// Which list is read.
    #[derive(Clone, Copy)]
    enum Records {
        Sites,
        Devices,
        Interfaces,
    }

    /// A list of records, each added under `parent`.
    struct Each<'a>(Records, &'a mut LocalStore, Option<Handle>);

    impl<'de> DeserializeSeed<'de> for Each<'_> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_seq(self)
        }
    }

    impl<'de> Visitor<'de> for Each<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of records")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let Each(records, store, parent) = self;
            match (records, parent) {
                (Records::Interfaces, Some(device)) => {
                    while let Some(i) = seq.next_element::<Interface>()? {
                        store.add_under(device, i).map_err(de::Error::custom)?;
                    }
                }
                _ => while seq.next_element_seed(Record(records, &mut *store, parent))?.is_some() {},
            }
            Ok(())
        }
    }

    /// A site or a device record: its fields, then its children.
    struct Record<'a>(Records, &'a mut LocalStore, Option<Handle>);

    impl<'de> DeserializeSeed<'de> for Record<'_> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for Record<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a site or device record")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let Record(records, store, parent) = self;
            let mut fields: [Name; 6] = Default::default();
            let names: &[Field] = match records {
                Records::Sites => &[Field::Name, Field::Region, Field::Status],
                _ => &[
                    Field::Site,
                    Field::Name,
                    Field::Role,
                    Field::Model,
                    Field::Serial,
                    Field::Status,
                ],
            };
            let children = match records {
                Records::Sites => Field::Devices,
                _ => Field::Interfaces,
            };
            while let Some(key) = map.next_key::<Field>()? {
                if let Some(i) = names.iter().position(|n| *n == key) {
                    fields[i] = map.next_value()?;
                } else if key == children {
                    let [a, b, c, d, e, f] = std::mem::take(&mut fields);
                    let handle = match records {
                        Records::Sites => store.add(Site {
                            name: a,
                            region: b,
                            status: c,
                        }),
                        _ => {
                            let device = Device {
                                site: a,
                                name: b,
                                role: c,
                                model: d,
                                serial: e,
                                status: f,
                            };
                            let site = parent.ok_or_else(|| de::Error::custom("a device outside a site"))?;
                            store.add_under(site, device)
                        }
                    }
                    .map_err(de::Error::custom)?;
                    let below = match records {
                        Records::Sites => Records::Devices,
                        _ => Records::Interfaces,
                    };
                    map.next_value_seed(Each(below, &mut *store, Some(handle)))?;
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(())
        }
    }
}

/// A deterministic pair of workloads of about `n` models each (1 % sites,
/// 9 % devices, 90 % interfaces); about 5 % of the models differ (a third
/// created, a third deleted, a third updated), in the spirit of
/// `gen_workload.py`, without its files.
pub fn generate(n: usize) -> (File, File) {
    generate_shape(n, 10)
}

/// Like [`generate`], with `fanout` interfaces per device (about 10 in the
/// standard shape; 50 gives sibling lists past the differ's short-list scan).
pub fn generate_shape(n: usize, fanout: usize) -> (File, File) {
    let devices_per_site = 9;
    let per_site = 1 + devices_per_site * (1 + fanout.max(1));
    let sites = (n / per_site).max(1);
    let interfaces_per_device = fanout.max(1);
    let side = |target: bool| File {
        site: (0..sites)
            .map(|s| {
                let site: Name = format!("site{s:06}").into();
                SiteRec {
                    name: site.clone(),
                    region: ["us-east", "eu-west", "ap-south"][s % 3].into(),
                    status: "active".into(),
                    devices: (0..devices_per_site)
                        .map(|d| {
                            let dev: Name = format!("dev{d:04}").into();
                            let changed = target && (s * devices_per_site + d) % 60 == 0;
                            DeviceRec {
                                site: site.clone(),
                                name: dev.clone(),
                                role: if changed { "spine".into() } else { "leaf".into() },
                                model: "EX4300-48T".into(),
                                serial: format!("SN{s:06}{d:04}").into(),
                                status: "active".into(),
                                interfaces: (0..interfaces_per_device)
                                    .map(|i| i + usize::from(target && (s + d + i) % 30 == 0) * 1000)
                                    .map(|i| Interface {
                                        site: site.clone(),
                                        device: dev.clone(),
                                        name: format!("Ethernet1/{i}").into(),
                                        description: if target && (s + d + i) % 40 == 1 {
                                            "changed".into()
                                        } else {
                                            format!("port {i}").into()
                                        },
                                        mtu: 9216,
                                        enabled: true,
                                        mode: "access".into(),
                                    })
                                    .collect(),
                            }
                        })
                        .collect(),
                }
            })
            .collect(),
    };
    (side(false), side(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{"site":[
{"name":"s1","region":"us-east","status":"active","devices":[{"site":"s1","name":"d1","role":"leaf","model":"m","serial":"x1","status":"active","interfaces":[{"site":"s1","device":"d1","name":"Ethernet1/1","description":"up\nlink","mtu":9216,"enabled":true,"mode":"access"}]}]},
{"name":"s2","region":"eu-west","status":"active","devices":[]}
]}"#;

    #[test]
    fn the_streaming_load_holds_what_parse_and_build_hold_and_names_a_duplicate() {
        let streamed = load("a", DOC.as_bytes()).unwrap();
        let built = build("b", serde_json::from_str(DOC).unwrap()).unwrap();
        assert_eq!(streamed.store.count_all(), 4);
        assert_eq!(streamed.store.fingerprint(), built.store.fingerprint());
        let read = load_reader("c", DOC.as_bytes()).unwrap();
        assert_eq!(read.store.fingerprint(), built.store.fingerprint());
        let dup = DOC.replace(r#""name":"s2""#, r#""name":"s1""#);
        for err in [
            load("a", dup.as_bytes()).unwrap_err().to_string(),
            load_reader("a", dup.as_bytes()).unwrap_err().to_string(),
        ] {
            assert!(err.contains("s1") && err.contains("line 3"), "{err}");
        }
    }

    #[test]
    fn the_file_loader_reads_the_same_whatever_its_buffer_and_places_errors_in_the_whole_input() {
        // Other keys (numbers that a buffer may cut in two), spaces around
        // the punctuation, a site without devices.
        let doc = format!(
            "{{ \"meta\" : {{\"n\": 1234567, \"tags\": [\"a\", 2.5e3]}} ,\n  \"site\" : {} , \"tail\": 98765 }}\n",
            &DOC[8..DOC.len() - 1]
        )
        .replace(r#""devices":[]"#, r#""region2":null"#)
        // Characters of two, three and four bytes, which a buffer may cut.
        .replace(r#""region":"eu-west""#, r#""region":"eu-wést €✓😀""#);
        assert!(doc.contains('😀'));
        let want = build("b", serde_json::from_str(&doc).unwrap())
            .unwrap()
            .store
            .fingerprint();
        for chunk in [1, 2, 3, 7, 16, 64, 1 << 18] {
            let read = load_chunked("c", doc.as_bytes(), chunk).unwrap();
            assert_eq!(read.store.fingerprint(), want, "a buffer of {chunk}");
        }
        assert_eq!(load_reader("e", &b" {} "[..]).unwrap().store.count_all(), 0);
        // Bad JSON inside a record, and a document cut short inside one:
        // the message and the place serde_json gives for the whole input.
        let bad = [
            doc.replace(r#""mtu":9216"#, r#""mtu":"9216""#),
            doc.replace(r#""region":"eu-wést €✓😀""#, r#""region" "eu-west""#),
            doc[..doc.find("Ethernet").unwrap()].to_string(),
        ];
        for bad in bad {
            let want = serde_json::from_str::<File>(&bad).err().unwrap().to_string();
            for chunk in [1, 5, 64, 1 << 18] {
                let got = load_chunked("c", bad.as_bytes(), chunk).unwrap_err().to_string();
                assert_eq!(got, want, "a buffer of {chunk}");
            }
        }
        // Bytes that are not UTF-8: said at their place, whatever the buffer.
        let mut bytes = doc.clone().into_bytes();
        let at = doc.find("eu-w").unwrap() + 4;
        bytes[at] = 0xff;
        let line = doc[..at].matches('\n').count() + 1;
        let column = at - doc[..at].rfind('\n').map_or(0, |n| n + 1) + 1;
        for chunk in [1, 3, 64, 1 << 18] {
            let err = load_chunked("c", &bytes[..], chunk).unwrap_err().to_string();
            assert_eq!(
                err,
                format!("the input is not UTF-8 at line {line} column {column}"),
                "a buffer of {chunk}"
            );
        }
        // Punctuation the loader reads itself.
        let err = load_reader("c", doc.replace("} ,\n", "}\n").as_bytes()).unwrap_err();
        assert_eq!(err.to_string(), "expected `,` or `}` at line 2 column 3");
        let err = load_reader("c", format!("{doc} x").as_bytes()).unwrap_err();
        assert_eq!(err.to_string(), "trailing characters at line 6 column 2");
    }
}
