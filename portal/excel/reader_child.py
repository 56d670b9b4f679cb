"""The child process of ``sandbox``: reads one workbook with python-calamine
and writes its sheets back as plain values.

Run as a script by a fresh interpreter (``python -I reader_child.py BYTES
SECONDS``), so it imports only the standard library and python-calamine, never
the portal. It limits its own address space and CPU time before it reads
anything, reads a pickled request on stdin (from the parent, trusted) and
writes frames on stdout, each an 8-byte length and a pickle:

1. ``("book", names, visible names, metadata rows or None, first)``, where
   ``first`` is single mode's first sheet's (row, column) start, or None when
   that sheet is one of the portal's own (or there is no metadata sheet);
2. single mode: ``("rows", [row tuples])`` in batches; per-instance mode:
   ``("sheet", name, [row tuples])`` for each task sheet, unless there are
   more than the request's ``max_sheets``;
3. ``("end",)``; or, at any point, ``("error", "damaged" | "unreadable")``.

Values are str, float, int, bool and datetime types. Frames are written as
soon as they are ready, so the parent works on the first rows while the
child converts the next ones.
"""
import io
import pickle
import resource
import sys

BATCH = 2000


def limit(memory_bytes, seconds):
    """An allocation past ``memory_bytes`` fails (and calamine aborts this
    process only); past ``seconds`` of CPU the kernel stops it."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 1))


def own_sheets(meta_rows, key):
    """The sheet names the metadata lists as the portal's own (as meta.parse_meta reads them)."""
    return {str(row[1]) for row in meta_rows
            if len(row) >= 2 and row[0] not in ("", None) and str(row[0]).strip() == key}


def frames(request):
    """The frames for one request (see the module docstring)."""
    from python_calamine import CalamineError, CalamineWorkbook, SheetVisibleEnum
    try:
        book = CalamineWorkbook.from_filelike(io.BytesIO(request["data"]))
        names = list(book.sheet_names)
        visible = [m.name for m in book.sheets_metadata if m.visible == SheetVisibleEnum.Visible]
        meta_sheet = request["meta_sheet"]
        if meta_sheet not in names:
            yield ("book", names, visible, None, None)
            yield ("end",)
            return
        meta = [tuple(row) for row in book.get_sheet_by_name(meta_sheet).to_python(
            skip_empty_area=False)]
        own = {meta_sheet, request["lists_sheet"]} | own_sheets(meta, request["own_key"])
        if request["mode"] == "single":
            if names[0] in own:
                yield ("book", names, visible, meta, None)
            else:
                sheet = book.get_sheet_by_index(0)
                yield ("book", names, visible, meta, tuple(sheet.start or (0, 0)))
                batch = []
                for row in sheet.iter_rows():
                    batch.append(tuple(row))
                    if len(batch) == BATCH:
                        yield ("rows", batch)
                        batch = []
                if batch:
                    yield ("rows", batch)
        else:
            yield ("book", names, visible, meta, None)
            tasks = [name for name in visible if name not in own]
            if len(tasks) <= request["max_sheets"]:
                for name in tasks:
                    rows = book.get_sheet_by_name(name).to_python(skip_empty_area=False)
                    yield ("sheet", name, [tuple(row) for row in rows])
        yield ("end",)
    except CalamineError:
        yield ("error", "damaged")


def write(frame):
    payload = pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)
    sys.stdout.buffer.write(len(payload).to_bytes(8, "big") + payload)
    sys.stdout.buffer.flush()


def main():
    limit(int(sys.argv[1]), int(sys.argv[2]))
    request = pickle.loads(sys.stdin.buffer.read())
    try:
        for frame in frames(request):
            write(frame)
    except BaseException:               # MemoryError, or a Rust panic (a BaseException)
        write(("error", "unreadable"))


if __name__ == "__main__":
    main()
