/* Reads what Vigil needs from OTLP wire bytes without building protobuf messages.
 *
 * `metric_point_count(wire)` counts the data points of a metrics request: the
 * receiver and the batch processor count metric items by their points, and
 * reading that through parsed messages costs more than the parse itself.
 *
 * `scan(wire, logs, prefixes, skip_scope)` walks an ExportTraceServiceRequest
 * (or ExportLogsServiceRequest) once and returns, for every attribute of a
 * span or log record whose key starts with one of `prefixes`, one record:
 * the item it belongs to, its key, the kind of its value and the value. Numbers
 * go into flat typed arrays (bytes the caller reads with numpy); only strings
 * and arrays become Python objects. Everything else in the request is skipped
 * by length, so the cost grows with the bytes walked, not with the objects a
 * parsed message would create.
 *
 * `check(schema, root, wire, ...)` says whether protobuf's parser would accept
 * the bytes as a request, against a table of field kinds built from the
 * request's descriptors (agent/wirecheck.py), and counts its items.
 *
 * Field numbers, the names it looks for (`service.name`, `exception.type`) and the string cut are not
 * written here: the module asks agent/wirelayout.py for them (taken from the protobuf descriptors and
 * agent/ml/vocabulary.py) once, when it is imported, and keeps them in `L`.
 *
 * All read what protobuf would read for well-formed input in its usual shape.
 * For anything it does not handle the way the protobuf runtime would (a value
 * given twice, which protobuf merges; groups; more than MAX_KEYS distinct
 * matching keys; malformed bytes) it raises `Unsupported`, and the caller
 * reads the batch through the parsed message instead.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

#define MAX_KEYS 256
#define MAX_PREFIXES 64

/* Value kinds, in AnyValue's order; the module exports them (STRING, BOOL, ...) for the caller. */
enum { K_NONE = 0, K_STRING = 1, K_BOOL = 2, K_INT = 3, K_DOUBLE = 4, K_ARRAY = 5, K_KVLIST = 6, K_BYTES = 7 };
/* The wire type each kind's field has. */
static const int value_wire_type[] = {-1, 2, 0, 0, 1, 2, 2, 2};

static PyObject *Unsupported;

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} Cursor;

typedef struct {
    char *data;
    size_t len;
    size_t cap;
} Buffer;

typedef struct {
    const uint8_t *ptr;
    Py_ssize_t len;
} Span_;

/* ---- the layout -------------------------------------------------------- */

/* Per-signal entries are indexed by these (a scan's `logs` flag picks TRACES or LOGS). */
enum { TRACES = 0, LOGS = 1, METRICS = 2, SIGNALS = 3 };
#define MAX_VALUE_FIELD 64
#define MAX_METRIC_DATA 8

/* What the bytes are read by: see agent/wirelayout.py, which gives each by the same name. */
typedef struct {
    uint32_t request_resources[SIGNALS], resource_resource[SIGNALS], resource_scopes[SIGNALS];
    uint32_t scope_scope[SIGNALS], scope_items[SIGNALS], item_attributes[SIGNALS];
    uint32_t item_trace_id[SIGNALS], item_span_id[SIGNALS];
    uint32_t resource_attributes, scope_name;
    uint32_t span_start, span_end, span_events, span_status, status_code, event_name, event_attributes;
    uint32_t key_value_key, key_value_value, array_values;
    uint8_t value_kind[MAX_VALUE_FIELD]; /* AnyValue's field number -> its kind; K_NONE: not a value */
    uint32_t metric_data[MAX_METRIC_DATA], metric_points[MAX_METRIC_DATA]; /* Metric's `data` members */
    int n_metric_data;
    Py_ssize_t max_string_length; /* characters; a string of at most this many bytes has nothing to cut */
    Span_ service_name, exception_event, exception_type;
    uint8_t double_element[2]; /* an array element's tag and its double's tag (0: not one byte each) */
} Layout;

static Layout L;
static PyObject *layout_source; /* the dict the layout came from: L's names point into its bytes */

typedef struct {
    /* inputs */
    int logs;
    Span_ prefixes[MAX_PREFIXES];
    int n_prefixes;
    Span_ vector_keys[MAX_PREFIXES]; /* keys whose all-number arrays are handed back packed (embeddings) */
    int n_vector_keys;
    Span_ skip_scope;
    /* distinct matching keys */
    Span_ keys[MAX_KEYS];
    int n_keys;
    int last_key; /* apps write attributes in the same order on every item: try the next key first */
    PyObject *key_list;
    /* one entry per record */
    Buffer rec_item, rec_key, rec_kind, rec_number, rec_int;
    int32_t n_records;
    Buffer by_key[MAX_KEYS]; /* per key, the indices of its records */
    int32_t last_item[MAX_KEYS]; /* per key, the item of its last record: a key repeated in an item is seen */
    uint8_t is_vector[MAX_KEYS]; /* per key: one of vector_keys */
    int repeated; /* some item gives a key more than once (the caller then keeps the last) */
    int plain_strings; /* every string value is 1 to max_string_length bytes: nothing to cut, none empty */
    PyObject *last_text[MAX_KEYS]; /* per key, its last string value, reused while the next is the same */
    Cursor last_bytes[MAX_KEYS];
    PyObject *rec_obj;
    /* one entry per item */
    int32_t n_items;
    int32_t n_resources;
    Buffer item_resource, item_start, item_end, item_status, item_trace_id, item_span_id;
    PyObject *services;
    PyObject *exceptions; /* item -> the exception.type of its "exception" event, where it has one */
} Scan;

/* ---- small helpers ---------------------------------------------------- */

static int unsupported(const char *why) {
    if (!PyErr_Occurred())
        PyErr_SetString(Unsupported, why);
    return -1;
}

static int grow(Buffer *b, size_t size) {
    size_t cap = b->cap ? b->cap * 2 : 4096;
    while (cap < b->len + size)
        cap *= 2;
    char *data = PyMem_Realloc(b->data, cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

/* Inlined: every call has a constant size, so the copy is a store or two (a dozen calls a span). */
static inline int push(Buffer *b, const void *value, size_t size) {
    if (b->len + size > b->cap && grow(b, size) < 0)
        return -1;
    memcpy(b->data + b->len, value, size);
    b->len += size;
    return 0;
}

static inline int read_varint(Cursor *c, uint64_t *out) {
    if (c->p < c->end && *c->p < 0x80) { /* tags, lengths and small numbers: one byte */
        *out = *c->p++;
        return 0;
    }
    uint64_t value = 0;
    for (int shift = 0; shift < 64 && c->p < c->end; shift += 7) {
        uint8_t byte = *c->p++;
        value |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *out = value;
            return 0;
        }
    }
    return unsupported("malformed varint");
}

/* The next field: its number and wire type; for length-delimited fields `sub` is its content,
 * for varints `*number` its value, for fixed64 `*number` its bits. Returns 1 at the end, -1 on error. */
static int next_field(Cursor *c, uint32_t *field, int *wire_type, Cursor *sub, uint64_t *number) {
    if (c->p >= c->end)
        return 1;
    uint64_t tag;
    if (read_varint(c, &tag) < 0)
        return -1;
    if (tag > 0xFFFFFFFFu || (tag >> 3) == 0) /* never wrap a huge tag onto a small field number */
        return unsupported("bad field tag");
    *field = (uint32_t)(tag >> 3);
    *wire_type = (int)(tag & 7);
    switch (*wire_type) {
    case 0:
        return read_varint(c, number);
    case 1:
        if (c->end - c->p < 8)
            return unsupported("truncated fixed64");
        memcpy(number, c->p, 8); /* little-endian hosts only: see the module's init */
        c->p += 8;
        return 0;
    case 2: {
        uint64_t length;
        if (read_varint(c, &length) < 0)
            return -1;
        if (length > (uint64_t)(c->end - c->p))
            return unsupported("truncated length-delimited field");
        sub->p = c->p;
        sub->end = c->p + length;
        c->p += length;
        return 0;
    }
    case 5:
        if (c->end - c->p < 4)
            return unsupported("truncated fixed32");
        *number = 0;
        memcpy(number, c->p, 4);
        c->p += 4;
        return 0;
    default:
        return unsupported("groups are not read");
    }
}

#define FOR_FIELDS(cursor)                                                                         \
    for (int _rc; (_rc = next_field(&(cursor), &field, &wire_type, &sub, &number)) != 1;)           \
        if (_rc < 0)                                                                               \
            return -1;                                                                             \
        else

static PyObject *decode_text(Cursor value) {
    return PyUnicode_DecodeUTF8((const char *)value.p, value.end - value.p, NULL);
}

/* ---- values ----------------------------------------------------------- */

typedef struct {
    int kind;
    uint64_t bits; /* bool/int: the varint; double: the fixed64 bits */
    Cursor content; /* string, bytes, array, kvlist */
} Value;

/* An AnyValue. A message that sets its value more than once is merged by protobuf; not read here. */
static int read_value(Cursor c, Value *value) {
    uint32_t field;
    int wire_type;
    Cursor sub = {0};
    uint64_t number = 0;
    int seen = 0;
    value->kind = K_NONE;
    FOR_FIELDS(c) {
        int kind = field < MAX_VALUE_FIELD ? L.value_kind[field] : K_NONE;
        if (kind == K_NONE)
            continue;
        if (wire_type != value_wire_type[kind])
            return unsupported("value with an unexpected wire type");
        if (seen++)
            return unsupported("value set more than once");
        value->kind = kind;
        value->bits = number;
        value->content = sub;
    }
    return 0;
}

static PyObject *scalar_object(const Value *v) {
    switch (v->kind) {
    case K_STRING:
        return decode_text(v->content);
    case K_BOOL:
        return PyBool_FromLong(v->bits != 0);
    case K_INT:
        return PyLong_FromLongLong((long long)v->bits);
    case K_DOUBLE: {
        double d;
        memcpy(&d, &v->bits, 8);
        return PyFloat_FromDouble(d);
    }
    case K_NONE:
        return PyUnicode_FromStringAndSize("", 0); /* an empty AnyValue reads as its default string */
    default:
        unsupported("array element that is not a scalar");
        return NULL;
    }
}

/* An ArrayValue of scalars as a Python list. */
static PyObject *array_object(Cursor c) {
    uint32_t field;
    int wire_type;
    Cursor sub = {0};
    uint64_t number = 0;
    PyObject *list = PyList_New(0);
    if (list == NULL)
        return NULL;
    for (int rc; (rc = next_field(&c, &field, &wire_type, &sub, &number)) != 1;) {
        if (rc < 0)
            goto fail;
        if (field != L.array_values)
            continue;
        if (wire_type != 2) {
            unsupported("array element with an unexpected wire type");
            goto fail;
        }
        Value element;
        if (read_value(sub, &element) < 0)
            goto fail;
        PyObject *item = scalar_object(&element);
        if (item == NULL || PyList_Append(list, item) < 0) {
            Py_XDECREF(item);
            goto fail;
        }
        Py_DECREF(item);
    }
    return list;
fail:
    Py_DECREF(list);
    return NULL;
}

/* An ArrayValue as packed float64 (bytes) when every element is an int or a double and there is one at
 * least; Py_None otherwise. An embedding of hundreds of numbers costs no Python object per number. */
static PyObject *packed_numbers(Cursor c) {
    uint32_t field;
    int wire_type;
    Cursor sub = {0};
    uint64_t number = 0;
    /* an element takes two bytes at least (its tag and length): at most half as many elements as bytes */
    double *out = PyMem_Malloc(((c.end - c.p) / 2 + 1) * sizeof(double));
    Py_ssize_t n = 0;
    if (out == NULL)
        return PyErr_NoMemory();
    while (c.p < c.end) {
        /* the usual element, as SDKs write it: 9 bytes holding one double */
        if (L.double_element[0] && c.end - c.p >= 11 && c.p[0] == L.double_element[0] &&
            c.p[1] == 9 && c.p[2] == L.double_element[1]) {
            memcpy(&out[n++], c.p + 3, 8);
            c.p += 11;
            continue;
        }
        int rc = next_field(&c, &field, &wire_type, &sub, &number);
        if (rc == 1)
            break;
        if (rc < 0)
            goto fail;
        if (field != L.array_values)
            continue;
        Value element;
        if (wire_type != 2) {
            unsupported("array element with an unexpected wire type");
            goto fail;
        }
        if (read_value(sub, &element) < 0)
            goto fail;
        if (element.kind == K_INT) {
            out[n++] = (double)(int64_t)element.bits;
        } else if (element.kind == K_DOUBLE) {
            memcpy(&out[n++], &element.bits, 8);
        } else {
            PyMem_Free(out);
            Py_RETURN_NONE;
        }
    }
    PyObject *packed = n ? PyBytes_FromStringAndSize((const char *)out, n * 8) : (Py_INCREF(Py_None), Py_None);
    PyMem_Free(out);
    return packed;
fail:
    PyMem_Free(out);
    return NULL;
}

/* ---- attributes ------------------------------------------------------- */

static int key_matches(const Scan *s, const uint8_t *key, Py_ssize_t len) {
    for (int i = 0; i < s->n_prefixes; i++) {
        const Span_ *prefix = &s->prefixes[i];
        /* the first byte first: most keys (http.*, service.*) differ from every prefix there */
        if (prefix->len <= len && (prefix->len == 0 || prefix->ptr[0] == key[0]) &&
            memcmp(prefix->ptr, key, prefix->len) == 0)
            return 1;
    }
    return 0;
}

static int key_id(Scan *s, const uint8_t *key, Py_ssize_t len) {
    for (int n = 0; n < s->n_keys; n++) {
        int i = (s->last_key + 1 + n) % s->n_keys;
        if (s->keys[i].len == len && memcmp(s->keys[i].ptr, key, len) == 0)
            return s->last_key = i;
    }
    if (s->n_keys == MAX_KEYS)
        return unsupported("too many distinct keys");
    PyObject *text = PyUnicode_DecodeUTF8((const char *)key, len, NULL);
    if (text == NULL || PyList_Append(s->key_list, text) < 0) {
        Py_XDECREF(text);
        return -1;
    }
    Py_DECREF(text);
    s->keys[s->n_keys].ptr = key;
    s->keys[s->n_keys].len = len;
    s->last_item[s->n_keys] = -1;
    for (int v = 0; v < s->n_vector_keys; v++)
        if (s->vector_keys[v].len == len && memcmp(s->vector_keys[v].ptr, key, len) == 0)
            s->is_vector[s->n_keys] = 1;
    return s->last_key = s->n_keys++;
}

/* A KeyValue: its key (the last given) and the bytes of its value. */
typedef struct {
    Cursor key, value;
    int has_key, values; /* values: how many value fields; protobuf merges repeats, not read here */
} KeyValue;

static int split_key_value(Cursor c, KeyValue *kv) {
    uint32_t field;
    int wire_type;
    Cursor sub = {0};
    uint64_t number = 0;
    memset(kv, 0, sizeof *kv);
    FOR_FIELDS(c) {
        if (field == L.key_value_key && wire_type == 2) {
            kv->key = sub;
            kv->has_key = 1;
        } else if (field == L.key_value_value && wire_type == 2) {
            kv->value = sub;
            kv->values++;
        }
    }
    return 0;
}

static int key_is(const KeyValue *kv, const Span_ *text) {
    return kv->has_key && kv->key.end - kv->key.p == text->len && memcmp(kv->key.p, text->ptr, text->len) == 0;
}

/* The KeyValue's value as one AnyValue (kind K_NONE when it has none). */
static int key_value_value(const KeyValue *kv, Value *value) {
    value->kind = K_NONE;
    if (kv->values > 1)
        return unsupported("attribute value given more than once");
    return kv->values ? read_value(kv->value, value) : 0;
}

/* One KeyValue of item `item`: a record when its key matches and it has a value. */
static int read_attribute(Scan *s, Cursor c, int32_t item) {
    KeyValue kv;
    Value value;
    if (split_key_value(c, &kv) < 0)
        return -1;
    if (!kv.has_key || !key_matches(s, kv.key.p, kv.key.end - kv.key.p))
        return 0;
    if (key_value_value(&kv, &value) < 0)
        return -1;
    Cursor key = kv.key;
    if (value.kind == K_NONE)
        return 0; /* an attribute without a value is not read */
    int32_t id = key_id(s, key.p, key.end - key.p);
    if (id < 0)
        return -1;
    if (s->last_item[id] == item)
        s->repeated = 1;
    s->last_item[id] = item;
    uint8_t kind = (uint8_t)value.kind;
    double as_number = NAN;
    int64_t as_int = 0;
    PyObject *object = NULL;
    switch (value.kind) {
    case K_STRING: {
        Py_ssize_t length = value.content.end - value.content.p;
        Cursor *last = &s->last_bytes[id];
        if (length == 0 || length > L.max_string_length)
            s->plain_strings = 0;
        if (s->last_text[id] != NULL && last->end - last->p == length && memcmp(last->p, value.content.p, length) == 0) {
            object = s->last_text[id]; /* apps repeat model names, versions and classes on every item */
            Py_INCREF(object);
        } else if ((object = decode_text(value.content)) != NULL) {
            Py_XSETREF(s->last_text[id], object);
            Py_INCREF(object);
            *last = value.content;
        }
        break;
    }
    case K_BOOL:
        as_int = value.bits != 0;
        break;
    case K_INT:
        as_int = (int64_t)value.bits;
        as_number = (double)as_int;
        break;
    case K_DOUBLE:
        memcpy(&as_number, &value.bits, 8);
        break;
    case K_ARRAY:
        if (!s->is_vector[id]) {
            object = array_object(value.content);
        } else if ((object = packed_numbers(value.content)) != NULL && object != Py_None) {
            as_int = 1; /* an embedding: the reader takes it */
            as_number = (double)(PyBytes_GET_SIZE(object) / 8);
        }
        break;
    default: /* kvlist, bytes: only their kind matters */
        break;
    }
    if ((value.kind == K_STRING || value.kind == K_ARRAY) && object == NULL)
        return -1;
    int failed = PyList_Append(s->rec_obj, object ? object : Py_None) < 0;
    Py_XDECREF(object);
    int32_t record = s->n_records++;
    if (failed || push(&s->by_key[id], &record, 4) < 0 || push(&s->rec_item, &item, 4) < 0 ||
        push(&s->rec_key, &id, 4) < 0 || push(&s->rec_kind, &kind, 1) < 0 || push(&s->rec_number, &as_number, 8) < 0 ||
        push(&s->rec_int, &as_int, 8) < 0)
        return -1;
    return 0;
}

/* ---- items, scopes, resources ----------------------------------------- */

static int read_status_code(Cursor c, int32_t *code) {
    uint32_t field;
    int wire_type;
    Cursor sub = {0};
    uint64_t number = 0;
    FOR_FIELDS(c) {
        if (field == L.status_code && wire_type == 0)
            *code = (int32_t)number;
    }
    return 0;
}

/* The `exception.type` of a span's event, when the event is the exception event: 1 and `*type` set when
 * found (a non-empty string, as the parsed-message path looks for it). */
static int read_exception_event(Cursor c, Cursor *type) {
    uint32_t field;
    int wire_type;
    Cursor sub = {0}, name = {0};
    uint64_t number = 0;
    int named = 0;
    Cursor look = c;
    FOR_FIELDS(look) {
        if (field == L.event_name && wire_type == 2) {
            name = sub;
            named = 1;
        }
    }
    if (!named || name.end - name.p != L.exception_event.len ||
        memcmp(name.p, L.exception_event.ptr, L.exception_event.len) != 0)
        return 0;
    FOR_FIELDS(c) {
        if (field != L.event_attributes || wire_type != 2)
            continue;
        KeyValue kv;
        Value value;
        if (split_key_value(sub, &kv) < 0)
            return -1;
        if (!key_is(&kv, &L.exception_type))
            continue;
        if (key_value_value(&kv, &value) < 0)
            return -1;
        if (value.kind == K_STRING && value.content.end > value.content.p) {
            *type = value.content;
            return 1;
        }
    }
    return 0;
}

static int read_item(Scan *s, Cursor c) {
    uint32_t field;
    int wire_type;
    Cursor sub = {0};
    uint64_t number = 0, start = 0, end = 0;
    int32_t status = 0, item = s->n_items++;
    uint8_t trace_id[16] = {0}, span_id[8] = {0};
    uint32_t attributes = L.item_attributes[s->logs];
    Cursor exception = {0};
    int has_exception = 0;
    FOR_FIELDS(c) {
        if (field == attributes && wire_type == 2) {
            if (read_attribute(s, sub, item) < 0)
                return -1;
        } else if (field == L.item_trace_id[s->logs] && wire_type == 2) {
            /* the last given counts, as protobuf merges; an id of another length is no id */
            Py_ssize_t length = sub.end - sub.p;
            if (length == 16) memcpy(trace_id, sub.p, 16); else memset(trace_id, 0, 16);
        } else if (field == L.item_span_id[s->logs] && wire_type == 2) {
            Py_ssize_t length = sub.end - sub.p;
            if (length == 8) memcpy(span_id, sub.p, 8); else memset(span_id, 0, 8);
        } else if (!s->logs && field == L.span_start && wire_type == 1) {
            start = number;
        } else if (!s->logs && field == L.span_end && wire_type == 1) {
            end = number;
        } else if (!s->logs && field == L.span_status && wire_type == 2) {
            if (read_status_code(sub, &status) < 0)
                return -1;
        } else if (!s->logs && field == L.span_events && wire_type == 2 && !has_exception) {
            if ((has_exception = read_exception_event(sub, &exception)) < 0)
                return -1;
        }
    }
    if (has_exception) {
        PyObject *key = PyLong_FromLong(item), *type = decode_text(exception);
        int failed = key == NULL || type == NULL || PyDict_SetItem(s->exceptions, key, type) < 0;
        Py_XDECREF(key);
        Py_XDECREF(type);
        if (failed)
            return -1;
    }
    int32_t resource = s->n_resources - 1;
    if (push(&s->item_resource, &resource, 4) < 0 || push(&s->item_start, &start, 8) < 0 ||
        push(&s->item_end, &end, 8) < 0 || push(&s->item_status, &status, 4) < 0 ||
        push(&s->item_trace_id, trace_id, 16) < 0 || push(&s->item_span_id, span_id, 8) < 0)
        return -1;
    return 0;
}

/* True when an InstrumentationScope is the one whose records are skipped. */
static int is_skipped_scope(const Scan *s, Cursor scope_list) {
    uint32_t field;
    int wire_type;
    Cursor sub = {0}, name = {0};
    uint64_t number = 0;
    /* scope_list: the ScopeLogs message; its scope may come after its records, so look first */
    Cursor c = scope_list;
    FOR_FIELDS(c) {
        if (field == L.scope_scope[s->logs] && wire_type == 2) {
            Cursor scope = sub;
            uint32_t f2;
            int w2;
            Cursor sub2 = {0};
            uint64_t n2 = 0;
            for (int rc; (rc = next_field(&scope, &f2, &w2, &sub2, &n2)) != 1;) {
                if (rc < 0)
                    return -1;
                if (f2 == L.scope_name && w2 == 2)
                    name = sub2;
            }
        }
    }
    return s->skip_scope.len > 0 && name.end - name.p == s->skip_scope.len &&
           memcmp(name.p, s->skip_scope.ptr, s->skip_scope.len) == 0;
}

static int read_scope(Scan *s, Cursor c) {
    uint32_t field;
    int wire_type;
    Cursor sub = {0};
    uint64_t number = 0;
    if (s->logs) {
        int skipped = is_skipped_scope(s, c);
        if (skipped)
            return skipped < 0 ? -1 : 0;
    }
    FOR_FIELDS(c) {
        if (field == L.scope_items[s->logs] && wire_type == 2 && read_item(s, sub) < 0)
            return -1;
    }
    return 0;
}

/* The `service.name` of a Resource: the first such attribute, "" when it is not a string. */
static int find_service(Cursor resource, PyObject **service) {
    uint32_t field;
    int wire_type;
    Cursor sub = {0};
    uint64_t number = 0;
    FOR_FIELDS(resource) {
        if (field != L.resource_attributes || wire_type != 2)
            continue;
        KeyValue kv;
        Value value;
        if (split_key_value(sub, &kv) < 0)
            return -1;
        if (!key_is(&kv, &L.service_name))
            continue;
        if (key_value_value(&kv, &value) < 0)
            return -1;
        *service = value.kind == K_STRING ? decode_text(value.content) : PyUnicode_FromStringAndSize("", 0);
        return *service == NULL ? -1 : 1;
    }
    return 0;
}

static int read_resource_list(Scan *s, Cursor c) {
    uint32_t field;
    int wire_type;
    Cursor sub = {0};
    uint64_t number = 0;
    PyObject *service = NULL;
    /* the resource first: it may come after the scopes */
    Cursor look = c;
    for (int rc; (rc = next_field(&look, &field, &wire_type, &sub, &number)) != 1;) {
        if (rc < 0)
            return -1;
        if (field == L.resource_resource[s->logs] && wire_type == 2 && service == NULL &&
            find_service(sub, &service) < 0)
            return -1;
    }
    if (service == NULL && (service = PyUnicode_FromStringAndSize("", 0)) == NULL)
        return -1;
    int failed = PyList_Append(s->services, service) < 0;
    Py_DECREF(service);
    if (failed)
        return -1;
    s->n_resources++;
    FOR_FIELDS(c) {
        if (field == L.resource_scopes[s->logs] && wire_type == 2 && read_scope(s, sub) < 0)
            return -1;
    }
    return 0;
}

static int read_request(Scan *s, Cursor c) {
    uint32_t field;
    int wire_type;
    Cursor sub = {0};
    uint64_t number = 0;
    FOR_FIELDS(c) {
        if (field == L.request_resources[s->logs] && wire_type == 2 && read_resource_list(s, sub) < 0)
            return -1;
    }
    return 0;
}

/* ---- metric data points ---------------------------------------------- */

/* Data points of one Metric, as protobuf reads it: of its `data` oneof the last member given counts;
 * a member given twice is merged (its points add up), a different member replaces it. */
static int metric_points(Cursor c, Py_ssize_t *points) {
    uint32_t field, member = 0;
    int wire_type;
    Cursor sub = {0};
    uint64_t number = 0;
    Py_ssize_t count = 0;
    FOR_FIELDS(c) {
        int m = 0;
        while (m < L.n_metric_data && L.metric_data[m] != field)
            m++;
        if (wire_type != 2 || m == L.n_metric_data)
            continue; /* not a member of `data` (gauge, sum, histogram, ...) */
        if (field != member)
            count = 0;
        member = field;
        uint32_t f2;
        int w2;
        Cursor sub2 = {0};
        uint64_t n2 = 0;
        for (int rc; (rc = next_field(&sub, &f2, &w2, &sub2, &n2)) != 1;) {
            if (rc < 0)
                return -1;
            count += f2 == L.metric_points[m] && w2 == 2;
        }
    }
    *points += count;
    return 0;
}

/* Calls `inner` on the content of every occurrence of length-delimited field `number` of message `c`. */
static int each_field(Cursor c, uint32_t wanted, int (*inner)(Cursor, Py_ssize_t *), Py_ssize_t *points) {
    uint32_t field;
    int wire_type;
    Cursor sub = {0};
    uint64_t number = 0;
    FOR_FIELDS(c) {
        if (field == wanted && wire_type == 2 && inner(sub, points) < 0)
            return -1;
    }
    return 0;
}

static int scope_points(Cursor c, Py_ssize_t *points) {
    return each_field(c, L.scope_items[METRICS], metric_points, points);
}
static int resource_points(Cursor c, Py_ssize_t *points) {
    return each_field(c, L.resource_scopes[METRICS], scope_points, points);
}

static PyObject *metric_point_count(PyObject *module, PyObject *arg) {
    Py_buffer wire;
    if (PyObject_GetBuffer(arg, &wire, PyBUF_SIMPLE) < 0)
        return NULL;
    Py_ssize_t points = 0;
    Cursor c = {wire.buf, (const uint8_t *)wire.buf + wire.len};
    int failed = each_field(c, L.request_resources[METRICS], resource_points, &points) < 0;
    PyBuffer_Release(&wire);
    return failed ? NULL : PyLong_FromSsize_t(points);
}

/* ---- validation ------------------------------------------------------- */

/* What a field is, for checking a request without parsing it: the kinds of a message type's fields
 * come from its protobuf descriptor (agent/signals.py builds the table). */
enum { F_UNKNOWN = 0, F_VARINT, F_FIXED64, F_FIXED32, F_STRING, F_BYTES, F_MESSAGE };
#define MAX_FIELD 64
#define MAX_TYPES 96
#define MAX_DEPTH 64

typedef struct {
    uint8_t kind[MAX_FIELD];
    uint8_t repeated[MAX_FIELD];
    int16_t target[MAX_FIELD];
} MessageType;

typedef struct {
    int n;
    MessageType types[MAX_TYPES];
} Schema;

/* A varint as protobuf's parser surely takes it: at most 10 bytes, the 10th only 0 or 1. */
static inline int read_checked_varint(Cursor *c, uint64_t *out) {
    const uint8_t *start = c->p;
    if (read_varint(c, out) < 0)
        return -1;
    if (c->p - start == 10 && start[9] > 1)
        return unsupported("varint beyond 64 bits");
    return 0;
}

static int utf8_valid(const uint8_t *p, const uint8_t *end) {
    while (p < end) {
        if (end - p >= 8) { /* eight ASCII bytes at a time: the usual text */
            uint64_t word;
            memcpy(&word, p, 8);
            if (!(word & 0x8080808080808080ULL)) {
                p += 8;
                continue;
            }
        }
        uint8_t c = *p;
        if (c < 0x80) {
            p++;
            continue;
        }
        int more;
        uint8_t low = 0x80, high = 0xBF;
        if (c >= 0xC2 && c <= 0xDF)
            more = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            more = 2;
            if (c == 0xE0)
                low = 0xA0; /* overlong */
            else if (c == 0xED)
                high = 0x9F; /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            more = 3;
            if (c == 0xF0)
                low = 0x90; /* overlong */
            else if (c == 0xF4)
                high = 0x8F; /* beyond U+10FFFF */
        } else
            return 0;
        if (end - p <= more)
            return 0;
        if (p[1] < low || p[1] > high)
            return 0;
        for (int i = 2; i <= more; i++)
            if ((p[i] & 0xC0) != 0x80)
                return 0;
        p += more + 1;
    }
    return 1;
}

typedef struct {
    const Schema *schema;
    int count_type;
    uint32_t count_field;
    Py_ssize_t count;
} Check;

/* Checks one message of `type` as protobuf's parser would, and counts the (count_type, count_field)
 * messages in it. Anything it is not sure protobuf accepts is Unsupported: the caller then parses. */
static int check_message(Check *k, int type, Cursor c, int depth) {
    if (depth > MAX_DEPTH)
        return unsupported("nested too deep");
    const MessageType *t = &k->schema->types[type];
    while (c.p < c.end) {
        uint64_t tag;
        const uint8_t *start = c.p;
        if (read_checked_varint(&c, &tag) < 0)
            return -1;
        if (c.p - start > 5 || tag > 0xFFFFFFFFu || (tag >> 3) == 0)
            return unsupported("bad field tag"); /* protobuf refuses a tag padded beyond 5 bytes */
        uint32_t field = (uint32_t)(tag >> 3);
        int kind = field < MAX_FIELD ? t->kind[field] : F_UNKNOWN;
        int repeated = field < MAX_FIELD && t->repeated[field];
        uint64_t number;
        switch (tag & 7) {
        case 0: /* a varint: the field's, or an unknown field's (a known field of another wire type) */
            if (read_checked_varint(&c, &number) < 0)
                return -1;
            break;
        case 1:
            if (c.end - c.p < 8)
                return unsupported("truncated fixed64");
            c.p += 8;
            break;
        case 5:
            if (c.end - c.p < 4)
                return unsupported("truncated fixed32");
            c.p += 4;
            break;
        case 2: {
            uint64_t length;
            start = c.p;
            if (read_checked_varint(&c, &length) < 0)
                return -1;
            if (c.p - start > 5) /* as a tag: a length padded beyond 5 bytes is refused */
                return unsupported("bad length");
            if (length > (uint64_t)(c.end - c.p))
                return unsupported("truncated length-delimited field");
            Cursor sub = {c.p, c.p + length};
            c.p += length;
            if (kind == F_STRING) {
                if (!utf8_valid(sub.p, sub.end))
                    return unsupported("string that is not UTF-8");
            } else if (kind == F_MESSAGE) {
                if (type == k->count_type && field == k->count_field)
                    k->count++;
                if (check_message(k, t->target[field], sub, depth + 1) < 0)
                    return -1;
            } else if (repeated && kind == F_VARINT) { /* packed */
                while (sub.p < sub.end)
                    if (read_checked_varint(&sub, &number) < 0)
                        return -1;
            } else if (repeated && kind == F_FIXED64) {
                if (length % 8)
                    return unsupported("packed fixed64 of a bad length");
            } else if (repeated && kind == F_FIXED32) {
                if (length % 4)
                    return unsupported("packed fixed32 of a bad length");
            }
            break;
        }
        default: /* groups, or no wire type at all */
            return unsupported("group or unknown wire type");
        }
    }
    return 0;
}

static void free_schema(PyObject *capsule) {
    PyMem_Free(PyCapsule_GetPointer(capsule, "agent._otlpscan.Schema"));
}

/* schema(types): types[i] is a list of (field number, kind, repeated, target type index). */
static PyObject *make_schema(PyObject *module, PyObject *types) {
    if (!PyList_Check(types) || PyList_GET_SIZE(types) > MAX_TYPES) {
        PyErr_SetString(PyExc_ValueError, "schema: a list of at most MAX_TYPES message types");
        return NULL;
    }
    Schema *schema = PyMem_Calloc(1, sizeof(Schema));
    if (schema == NULL)
        return PyErr_NoMemory();
    schema->n = (int)PyList_GET_SIZE(types);
    for (int i = 0; i < schema->n; i++) {
        PyObject *fields = PyList_GET_ITEM(types, i);
        if (!PyList_Check(fields))
            goto bad;
        for (Py_ssize_t j = 0; j < PyList_GET_SIZE(fields); j++) {
            int number, kind, repeated, target;
            if (!PyArg_ParseTuple(PyList_GET_ITEM(fields, j), "iipi", &number, &kind, &repeated, &target))
                goto fail;
            if (number <= 0 || number >= MAX_FIELD || kind < F_UNKNOWN || kind > F_MESSAGE ||
                (kind == F_MESSAGE && (target < 0 || target >= schema->n)))
                goto bad;
            schema->types[i].kind[number] = (uint8_t)kind;
            schema->types[i].repeated[number] = (uint8_t)repeated;
            schema->types[i].target[number] = (int16_t)target;
        }
    }
    PyObject *capsule = PyCapsule_New(schema, "agent._otlpscan.Schema", free_schema);
    if (capsule == NULL)
        PyMem_Free(schema);
    return capsule;
bad:
    PyErr_SetString(PyExc_ValueError, "schema: a field this table cannot hold");
fail:
    PyMem_Free(schema);
    return NULL;
}

/* check(schema, root, wire, count_type, count_field) -> how many count_field messages of count_type. */
static PyObject *check(PyObject *module, PyObject *args) {
    PyObject *capsule;
    int root, count_type, count_field;
    Py_buffer wire;
    if (!PyArg_ParseTuple(args, "Oiy*ii", &capsule, &root, &wire, &count_type, &count_field))
        return NULL;
    Check k = {PyCapsule_GetPointer(capsule, "agent._otlpscan.Schema"), count_type, (uint32_t)count_field, 0};
    PyObject *result = NULL;
    if (k.schema != NULL) {
        if (root < 0 || root >= k.schema->n)
            PyErr_SetString(PyExc_ValueError, "no such message type");
        else {
            Cursor c = {wire.buf, (const uint8_t *)wire.buf + wire.len};
            if (check_message(&k, root, c, 0) == 0)
                result = PyLong_FromSsize_t(k.count);
        }
    }
    PyBuffer_Release(&wire);
    return result;
}

/* ---- loading the layout ------------------------------------------------ */

static int layout_error(const char *name) {
    if (!PyErr_Occurred())
        PyErr_Format(PyExc_ImportError, "agent.wirelayout: %s is not what agent/_otlpscan.c can use", name);
    return -1;
}

/* A field number (or a count) from a Python int. */
static int number_of(PyObject *value, const char *name, uint32_t *out) {
    long number = value != NULL ? PyLong_AsLong(value) : -1;
    if (number < 0 || number > 0x1FFFFFFF)
        return layout_error(name);
    *out = (uint32_t)number;
    return 0;
}

static int layout_number(PyObject *layout, const char *name, uint32_t *out) {
    return number_of(PyDict_GetItemString(layout, name), name, out);
}

/* A list of `n` numbers (`n` < 0: any length up to -n; the length is then returned). */
static int layout_numbers(PyObject *layout, const char *name, uint32_t *out, int n) {
    PyObject *list = PyDict_GetItemString(layout, name);
    if (list == NULL || !PyList_Check(list) || (n >= 0 ? PyList_GET_SIZE(list) != n : PyList_GET_SIZE(list) > -n))
        return layout_error(name);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++)
        if (number_of(PyList_GET_ITEM(list, i), name, &out[i]) < 0)
            return -1;
    return (int)PyList_GET_SIZE(list);
}

static int layout_text(PyObject *layout, const char *name, Span_ *out) {
    PyObject *text = PyDict_GetItemString(layout, name);
    if (text == NULL || !PyBytes_Check(text))
        return layout_error(name);
    out->ptr = (const uint8_t *)PyBytes_AS_STRING(text);
    out->len = PyBytes_GET_SIZE(text);
    return 0;
}

/* `L` from a layout dict; -1 (an exception set) when something in it does not fit. */
static int read_layout(PyObject *layout) {
    if (!PyDict_Check(layout))
        return layout_error("layout()");
    uint32_t any_value[K_BYTES], max_string_length;
    struct { const char *name; uint32_t *out; } numbers[] = {
        {"resource_attributes", &L.resource_attributes}, {"scope_name", &L.scope_name},
        {"span_start", &L.span_start}, {"span_end", &L.span_end}, {"span_events", &L.span_events},
        {"span_status", &L.span_status}, {"status_code", &L.status_code}, {"event_name", &L.event_name},
        {"event_attributes", &L.event_attributes}, {"key_value_key", &L.key_value_key},
        {"key_value_value", &L.key_value_value}, {"array_values", &L.array_values},
        {"max_string_length", &max_string_length},
    };
    for (size_t i = 0; i < sizeof numbers / sizeof *numbers; i++)
        if (layout_number(layout, numbers[i].name, numbers[i].out) < 0)
            return -1;
    struct { const char *name; uint32_t *out; } per_signal[] = {
        {"request_resources", L.request_resources}, {"resource_resource", L.resource_resource},
        {"resource_scopes", L.resource_scopes}, {"scope_scope", L.scope_scope}, {"scope_items", L.scope_items},
        {"item_attributes", L.item_attributes}, {"item_trace_id", L.item_trace_id},
        {"item_span_id", L.item_span_id},
    };
    for (size_t i = 0; i < sizeof per_signal / sizeof *per_signal; i++)
        if (layout_numbers(layout, per_signal[i].name, per_signal[i].out, SIGNALS) < 0)
            return -1;
    if (layout_numbers(layout, "any_value", any_value, K_BYTES) < 0)
        return -1;
    for (int k = 0; k < K_BYTES; k++) {
        if (any_value[k] == 0 || any_value[k] >= MAX_VALUE_FIELD)
            return layout_error("any_value");
        L.value_kind[any_value[k]] = (uint8_t)(K_STRING + k);
    }
    PyObject *members = PyDict_GetItemString(layout, "metric_data");
    if (members == NULL || !PyList_Check(members) || PyList_GET_SIZE(members) > MAX_METRIC_DATA)
        return layout_error("metric_data");
    L.n_metric_data = (int)PyList_GET_SIZE(members);
    for (int m = 0; m < L.n_metric_data; m++) {
        PyObject *pair = PyList_GET_ITEM(members, m);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 ||
            number_of(PyTuple_GET_ITEM(pair, 0), "metric_data", &L.metric_data[m]) < 0 ||
            number_of(PyTuple_GET_ITEM(pair, 1), "metric_data", &L.metric_points[m]) < 0)
            return layout_error("metric_data");
    }
    L.max_string_length = max_string_length;
    uint32_t double_field = any_value[K_DOUBLE - K_STRING];
    if (L.array_values < 16 && double_field < 16) {
        L.double_element[0] = (uint8_t)(L.array_values << 3 | 2);
        L.double_element[1] = (uint8_t)(double_field << 3 | 1);
    }
    if (layout_text(layout, "service_name", &L.service_name) < 0 ||
        layout_text(layout, "exception_event", &L.exception_event) < 0 ||
        layout_text(layout, "exception_type", &L.exception_type) < 0)
        return -1;
    return 0;
}

/* Fills `L` from agent/wirelayout.py's `layout()`, once. */
static int load_layout(void) {
    PyObject *source = PyImport_ImportModule("agent.wirelayout");
    PyObject *layout = source != NULL ? PyObject_CallMethod(source, "layout", NULL) : NULL;
    Py_XDECREF(source);
    if (layout == NULL || read_layout(layout) < 0) {
        Py_XDECREF(layout);
        return -1;
    }
    layout_source = layout;
    return 0;
}

/* ---- the module ------------------------------------------------------- */

static PyObject *take_bytes(Buffer *b) {
    PyObject *bytes = PyBytes_FromStringAndSize(b->data ? b->data : "", (Py_ssize_t)b->len);
    PyMem_Free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    return bytes;
}

static PyObject *scan(PyObject *module, PyObject *args) {
    Py_buffer wire;
    int logs;
    PyObject *prefixes;
    Py_buffer skip;
    PyObject *vectors = NULL;
    if (!PyArg_ParseTuple(args, "y*pO!y*|O!", &wire, &logs, &PyTuple_Type, &prefixes, &skip, &PyTuple_Type,
                          &vectors))
        return NULL;
    PyObject *result = NULL, *by_key = NULL;
    Scan *s = PyMem_Calloc(1, sizeof(Scan));
    if (s == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    s->logs = logs;
    s->plain_strings = 1;
    s->skip_scope.ptr = skip.buf;
    s->skip_scope.len = skip.len;
    if (PyTuple_GET_SIZE(prefixes) > MAX_PREFIXES) {
        PyErr_SetString(PyExc_ValueError, "too many prefixes");
        goto done;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(prefixes); i++) {
        PyObject *prefix = PyTuple_GET_ITEM(prefixes, i);
        if (!PyBytes_Check(prefix)) {
            PyErr_SetString(PyExc_TypeError, "prefixes must be bytes");
            goto done;
        }
        s->prefixes[i].ptr = (const uint8_t *)PyBytes_AS_STRING(prefix);
        s->prefixes[i].len = PyBytes_GET_SIZE(prefix);
    }
    s->n_prefixes = (int)PyTuple_GET_SIZE(prefixes);
    if (vectors != NULL) {
        if (PyTuple_GET_SIZE(vectors) > MAX_PREFIXES) {
            PyErr_SetString(PyExc_ValueError, "too many vector keys");
            goto done;
        }
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(vectors); i++) {
            PyObject *key = PyTuple_GET_ITEM(vectors, i);
            if (!PyBytes_Check(key)) {
                PyErr_SetString(PyExc_TypeError, "vector keys must be bytes");
                goto done;
            }
            s->vector_keys[i].ptr = (const uint8_t *)PyBytes_AS_STRING(key);
            s->vector_keys[i].len = PyBytes_GET_SIZE(key);
        }
        s->n_vector_keys = (int)PyTuple_GET_SIZE(vectors);
    }
    s->key_list = PyList_New(0);
    s->rec_obj = PyList_New(0);
    s->services = PyList_New(0);
    s->exceptions = PyDict_New();
    if (s->key_list == NULL || s->rec_obj == NULL || s->services == NULL || s->exceptions == NULL)
        goto done;
    Cursor c = {wire.buf, (const uint8_t *)wire.buf + wire.len};
    if (read_request(s, c) < 0)
        goto done;
    by_key = PyList_New(s->n_keys);
    if (by_key == NULL)
        goto done;
    for (int i = 0; i < s->n_keys; i++) {
        PyObject *indices = take_bytes(&s->by_key[i]);
        if (indices == NULL)
            goto done;
        PyList_SET_ITEM(by_key, i, indices);
    }
    result = Py_BuildValue("{s:O,s:O,s:N,s:N,s:N,s:N,s:N,s:O,s:i,s:N,s:N,s:N,s:N,s:N,s:N,s:O,s:O,s:O,s:O}",
                           "keys", s->key_list, "by_key", by_key, "item", take_bytes(&s->rec_item), "key", take_bytes(&s->rec_key),
                           "kind", take_bytes(&s->rec_kind), "number", take_bytes(&s->rec_number),
                           "int", take_bytes(&s->rec_int), "object", s->rec_obj, "items", s->n_items,
                           "item_resource", take_bytes(&s->item_resource), "start", take_bytes(&s->item_start),
                           "end", take_bytes(&s->item_end), "status", take_bytes(&s->item_status),
                           "trace_id", take_bytes(&s->item_trace_id), "span_id", take_bytes(&s->item_span_id),
                           "services", s->services, "exceptions", s->exceptions,
                           "repeated", s->repeated ? Py_True : Py_False,
                           "plain_strings", s->plain_strings ? Py_True : Py_False);
done:
    if (s != NULL) {
        Buffer *buffers[] = {&s->rec_item, &s->rec_key, &s->rec_kind, &s->rec_number, &s->rec_int,
                             &s->item_resource, &s->item_start, &s->item_end, &s->item_status,
                             &s->item_trace_id, &s->item_span_id};
        for (size_t i = 0; i < sizeof buffers / sizeof *buffers; i++)
            PyMem_Free(buffers[i]->data);
        for (int i = 0; i < MAX_KEYS; i++) {
            PyMem_Free(s->by_key[i].data);
            Py_XDECREF(s->last_text[i]);
        }
        Py_XDECREF(s->key_list);
        Py_XDECREF(s->rec_obj);
        Py_XDECREF(s->services);
        Py_XDECREF(s->exceptions);
        PyMem_Free(s);
    }
    Py_XDECREF(by_key);
    PyBuffer_Release(&wire);
    PyBuffer_Release(&skip);
    return result;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS,
     "scan(wire, logs, prefixes, skip_scope, vector_keys=()) -> dict: the attributes of spans (or log records) "
     "whose keys start with one of `prefixes`, as flat records (agent/_otlpscan.pyi: ScanResult). Raises Unsupported for "
     "input it leaves to protobuf."},
    {"metric_point_count", metric_point_count, METH_O,
     "metric_point_count(wire) -> int: the data points of an ExportMetricsServiceRequest, as the Collector "
     "counts metric items. Raises Unsupported for malformed bytes."},
    {"schema", make_schema, METH_O,
     "schema(types) -> a table for `check`: types[i] lists (field number, kind, repeated, target type)."},
    {"check", check, METH_VARARGS,
     "check(schema, root, wire, count_type, count_field) -> int: whether protobuf would accept `wire` as a "
     "message of type `root` (Unsupported where that is not certain) and how many `count_field` messages of "
     "`count_type` it holds."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, .m_name = "agent._otlpscan", .m_size = -1, .m_methods = methods};

PyMODINIT_FUNC PyInit__otlpscan(void) {
    const uint16_t probe = 1;
    if (*(const uint8_t *)&probe != 1) {
        PyErr_SetString(PyExc_ImportError, "agent._otlpscan reads fixed64 fields as little-endian");
        return NULL;
    }
    if (layout_source == NULL && load_layout() < 0)
        return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    const char *kinds[] = {"STRING", "BOOL", "INT", "DOUBLE", "ARRAY", "KVLIST", "BYTES"};
    for (int k = 0; k < K_BYTES; k++)
        if (PyModule_AddIntConstant(module, kinds[k], K_STRING + k) < 0) {
            Py_DECREF(module);
            return NULL;
        }
    Unsupported = PyErr_NewException("agent._otlpscan.Unsupported", PyExc_ValueError, NULL);
    if (Unsupported == NULL || PyModule_AddObject(module, "Unsupported", Unsupported) < 0) {
        Py_XDECREF(Unsupported);
        Py_DECREF(module);
        return NULL;
    }
    Py_INCREF(Unsupported);
    return module;
}
