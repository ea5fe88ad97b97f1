//! A minimal element tree for the small XML documents inside XDF chunks
//! (stream headers and footers), built on quick-xml.
use quick_xml::events::Event;
use quick_xml::Reader;

/// One XML element: its name, its text, and its child elements.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Element {
    /// The tag name.
    pub name: String,
    /// The element's own text, trimmed.
    pub text: String,
    /// Child elements in document order.
    pub children: Vec<Element>,
}

impl Element {
    /// Parses a document and returns its root element.
    pub fn parse(xml: &str) -> Result<Element, String> {
        let mut reader = Reader::from_str(xml);
        let mut stack: Vec<Element> = vec![Element::default()];
        loop {
            match reader.read_event().map_err(|e| e.to_string())? {
                Event::Start(e) => stack.push(Element {
                    name: String::from_utf8_lossy(e.name().as_ref()).into_owned(),
                    ..Default::default()
                }),
                Event::Empty(e) => {
                    let el = Element {
                        name: String::from_utf8_lossy(e.name().as_ref()).into_owned(),
                        ..Default::default()
                    };
                    stack.last_mut().expect("root").children.push(el);
                }
                Event::End(_) => {
                    let el = stack.pop().expect("balanced by quick-xml");
                    stack
                        .last_mut()
                        .ok_or("unbalanced end tag")?
                        .children
                        .push(el);
                }
                Event::Text(t) => {
                    let text = t.unescape().map_err(|e| e.to_string())?;
                    stack.last_mut().expect("root").text.push_str(&text);
                }
                Event::CData(t) => {
                    let top = stack.last_mut().expect("root");
                    top.text.push_str(&String::from_utf8_lossy(&t));
                }
                Event::Eof => break,
                _ => {}
            }
        }
        if stack.len() != 1 {
            return Err("unclosed element".into());
        }
        let doc = stack.pop().expect("document");
        doc.children
            .into_iter()
            .next()
            .ok_or_else(|| "no root element".into())
    }

    /// The first child with this name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Text of the descendant at a `/`-separated path, trimmed.
    pub fn text_at(&self, path: &str) -> Option<&str> {
        path.split('/')
            .try_fold(self, |el, name| el.child(name))
            .map(|el| el.text.trim())
    }
}

/// Escapes text for inclusion in an XML element.
pub fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}
