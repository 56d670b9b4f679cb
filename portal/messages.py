"""Messages kept as data and rendered when read: in the reader's language, with the node's labels.

A text read long after it was made (a batch item's error, read by whoever opens the batch, by
a script through the API, in an error workbook) must not stay in the language of whoever
happened to cause it. Such a message is stored as data and rendered for each reader:

    {"msgid": "Must be at least %(min)s.", "params": {"min": 0}}

``msgid`` is the English source string exactly as the code writes it inside ``_()`` (so
``pybabel extract`` sees it and the catalog translates it); a param is a value, or a message
itself (a table row's message holds its cell's message). Three more shapes compose messages:

    {"field": "amount"}                   the field's label, looked up in ``labels`` when rendered
    {"fields": {"amount": <message>}}     a form's errors: "Amount: Must be at least 0; Note: ..."
    {"all": [<message>, ...]}             messages side by side (the rows of a table)

A plain string is a message too: text stored before messages became data, or words that
are not the portal's own (an exception's text); it renders as it is.

``message(msgid, **params)`` makes a ``Message``: a ``str`` holding the text translated in the
current locale, so pages, JSON answers and comparisons use it as any string, that also
carries its data. Modules whose messages may be stored import it as ``_``; ``data_of`` gives
the data of a message (or keeps a plain string), ``render`` turns data back into text.
"""
from flask_babel import gettext

FINAL_STOPS = ".。"


def N_(msgid):
    """Marks ``msgid`` for extraction where it is only named, not translated yet."""
    return msgid


# The separator of a form's errors in one line (translated: Chinese uses a full-width
# semicolon); each error loses its final full stop there.
FIELDS_SEPARATOR = N_("; ")


class Message(str):
    """Text translated in the locale current when it was made, with the data to render it again."""

    def __new__(cls, text, data):
        made = super().__new__(cls, text)
        made.data = data
        return made

    def __reduce__(self):   # copies and pickles keep the data
        return (Message, (str(self), self.data))


def message(msgid, **params):
    """The ``Message`` of ``msgid`` with ``params`` (values or other messages)."""
    data = {"msgid": msgid, "params": {key: data_of(value) for key, value in params.items()}}
    return Message(_translate(msgid, params), data)


def field(key, label):
    """A field named in a message: shows ``label`` now, the node's label of ``key`` when rendered."""
    return Message(str(label), {"field": key})


def joined(parts):
    """Messages side by side, separated by a space."""
    parts = list(parts)
    return Message(" ".join(str(part) for part in parts), {"all": [data_of(p) for p in parts]})


def data_of(value):
    """What to store for ``value``: a message's data, a plain string as it is, None as None."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, Message):
        return value.data
    if isinstance(value, dict):
        return value              # already data
    return str(value)


def render(data, labels=None):
    """``data`` as text in the current locale; fields named by their ``labels`` (key when missing).

    Never raises: data this code cannot read (a catalog whose translation names other
    params, a shape from a newer release) falls back to the English source, then to nothing.
    """
    labels = labels or {}
    if data is None:
        return ""
    if isinstance(data, str):
        return data
    if not isinstance(data, dict):
        return str(data)
    if "msgid" in data:
        params = data.get("params") if isinstance(data.get("params"), dict) else {}
        return _translate(str(data["msgid"]), {key: _param(value, labels)
                                               for key, value in params.items()})
    if "field" in data:
        return str(labels.get(data["field"]) or data["field"])
    if isinstance(data.get("fields"), dict):
        return _translate(FIELDS_SEPARATOR, {}).join(
            _translate(N_("%(label)s: %(message)s"),
                       {"label": str(labels.get(key) or key),
                        "message": render(problem, labels).rstrip(FINAL_STOPS)})
            for key, problem in data["fields"].items())
    if isinstance(data.get("all"), list):
        return " ".join(render(part, labels) for part in data["all"])
    return ""


def render_fields(field_errors, labels=None):
    """{key: text} of stored per-field messages (data or plain text), in the current locale."""
    if not isinstance(field_errors, dict):
        return {}
    return {key: render(problem, labels) for key, problem in field_errors.items()}


def _param(value, labels):
    return render(value, labels) if isinstance(value, (str, dict)) else value


def _translate(msgid, params):
    try:
        return gettext(msgid, **params)
    except (KeyError, ValueError, TypeError):      # a translation that does not fit the params
        try:
            return msgid % params if params else msgid
        except (KeyError, ValueError, TypeError):
            return msgid
