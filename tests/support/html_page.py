"""An HTML page read back for tests: every element's tag, attributes and text by id."""

from html.parser import HTMLParser


class Page(HTMLParser):
    """Every element's tag, attributes and text; fails on unbalanced tags."""

    VOID = {"meta", "br", "img", "link", "input", "hr", "path", "rect", "ellipse", "stop"}

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.ids, self.stack, self.attrs, self.text = {}, [], [], {}
        self._current = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.attrs.append((tag, a))
        if "id" in a:
            assert a["id"] not in self.ids, f"duplicate id {a['id']}"
            self.ids[a["id"]] = tag
            self._current.append(a["id"])
        if tag not in self.VOID:
            self.stack.append((tag, "id" in a))

    def handle_startendtag(self, tag, attrs):
        a = dict(attrs)
        self.attrs.append((tag, a))
        if "id" in a:
            self.ids[a["id"]] = tag

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        open_tag, had_id = self.stack.pop()
        assert open_tag == tag, f"</{tag}> closes <{open_tag}>"
        if had_id:
            self._current.pop()

    def handle_data(self, data):
        for i in self._current:
            self.text[i] = self.text.get(i, "") + data
