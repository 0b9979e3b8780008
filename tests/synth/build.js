'use strict';
/*
 * Turn a patient spec (see patients.js for the shape) into FHIR R4 resources,
 * then into a Bundle.  Two outputs share one resource builder:
 *   - toTransaction(): a transaction Bundle for seeding a server; fullUrl
 *     urn:uuid:<uuid>, request POST <Type>, references by urn:uuid;
 *   - toServerBundle(): the same resources with logical ids and plain
 *     "Type/id" references, as a server would return them (searchset,
 *     collection, or transaction with PUT), for the offline fixtures.
 * Everything is a pure function of the spec (and the seed for the uuids).
 */
const crypto = require('node:crypto');
const C = require('./codes');

const { SYS } = C;
const REF = '@@ref:'; /* placeholder prefix, resolved per output flavour */

function cc(pair, text) {
    const out = { coding: [{ system: pair[0], code: pair[1] }] };
    if (text) out.text = text;
    return out;
}
function sct(code, text) {
    return cc([SYS.sct, code], text);
}
function loinc(code, text) {
    return cc([SYS.loinc, code], text);
}
function category(code) {
    return [cc([SYS.obsCat, code])];
}

/* Calendar arithmetic on YYYY-MM-DD strings, in UTC: no clock, no time zone. */
function addDays(date, days) {
    const [y, m, d] = date.split('-').map(Number);
    const t = Date.UTC(y, m - 1, d) + days * 86400000;
    return new Date(t).toISOString().slice(0, 10);
}

function uuidFor(seed, pid, key) {
    const h = crypto.createHash('sha1').update(`dnmbc-synth|${seed}|${pid}|${key}`).digest('hex');
    const v = ((parseInt(h[16], 16) & 0x3) | 0x8).toString(16);
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${v}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

function pidOf(spec) {
    return spec.pid || `synth-${String(spec.n).padStart(2, '0')}`;
}

/* Resource list builder: keeps insertion order (it is the Bundle order). */
class Res {
    constructor(spec) {
        this.spec = spec;
        this.pid = pidOf(spec);
        this.list = [];
    }
    add(key, resource) {
        if (this.list.some((r) => r.key === key)) throw new Error(`${this.pid}: duplicate key ${key}`);
        if (resource.resourceType !== 'Patient') {
            resource.identifier = [{ system: 'urn:dnmbc:synthetic:resource', value: `${this.pid}-${key}` }];
        }
        this.list.push({ key, resource });
        return resource;
    }
    date(offset) {
        return addDays(this.spec.dx, offset || 0);
    }
    obs(key, code, opts) {
        const o = {
            resourceType: 'Observation',
            status: opts.status || 'final',
            category: category(opts.category || 'laboratory'),
            code,
            subject: { reference: REF + 'patient' },
            effectiveDateTime: this.date(opts.day),
        };
        if (opts.focusPrimary && this.spec.primary) o.focus = [{ reference: REF + 'primary' }];
        for (const k of ['value', 'interpretation', 'method', 'component', 'hasMember']) {
            if (opts[k] === undefined) continue;
            if (k === 'value') Object.assign(o, opts.value);
            else o[k] = opts[k];
        }
        return this.add(key, o);
    }
}

function conditionBase(onsetDay, verification) {
    const c = { resourceType: 'Condition' };
    const ver = verification || 'confirmed';
    /* con-5: no clinicalStatus on an entered-in-error Condition; con-3 wants
     * one otherwise (problem-list-item). */
    if (ver !== 'entered-in-error') {
        c.clinicalStatus = cc([SYS.clin, ver === 'refuted' ? 'inactive' : 'active']);
    }
    c.verificationStatus = cc([SYS.ver, ver]);
    c.category = [cc([SYS.condCat, 'problem-list-item'])];
    c.onsetDay = onsetDay; /* consumed by finishCondition */
    return c;
}

function finishCondition(r, c, codeCC) {
    const day = c.onsetDay;
    const out = { resourceType: 'Condition' };
    if (c.extension) out.extension = c.extension;
    for (const k of ['clinicalStatus', 'verificationStatus', 'category']) if (c[k]) out[k] = c[k];
    out.code = codeCC;
    for (const k of ['bodySite', 'stage']) if (c[k]) out[k] = c[k];
    out.subject = { reference: REF + 'patient' };
    out.onsetDateTime = r.date(day);
    out.recordedDate = r.date(day);
    return out;
}

function addPrimary(r) {
    const p = r.spec.primary;
    if (!p) return;
    const c = conditionBase(0, p.verification);
    let code;
    switch (p.style) {
    case 'sct-left':
        code = cc(C.PRIMARY.sctLeftFemale, 'Primary malignant neoplasm of left breast');
        c.extension = [{ url: C.EXT.histology, valueCodeableConcept: cc(C.HISTO.idcSct) }];
        c.bodySite = [cc(C.BREAST_SITE.left)];
        break;
    case 'sct-right':
        code = cc(C.PRIMARY.sctRightFemale, 'Primary malignant neoplasm of right breast');
        c.extension = [{ url: C.EXT.histology, valueCodeableConcept: cc(C.HISTO.ilcSct) }];
        break;
    case 'sct-idc-left':
        code = cc(C.PRIMARY.sctIdcLeft, 'Infiltrating ductal carcinoma, left breast');
        break;
    case 'sct-ilc-right':
        code = cc(C.PRIMARY.sctIlcRight, 'Infiltrating lobular carcinoma, right breast');
        break;
    case 'sct-primary':
        code = cc(C.PRIMARY.sctPrimaryBreast, 'Primary breast cancer');
        c.bodySite = [cc(C.BREAST_SITE.right)];
        break;
    case 'sct-male':
        code = cc(C.PRIMARY.sctMaleBreast, 'Breast cancer (male)');
        c.bodySite = [cc(C.BREAST_SITE.left)];
        break;
    case 'synthea':
        code = cc(C.PRIMARY.synthea, 'Malignant neoplasm of breast');
        break;
    case 'inflammatory':
        code = cc(C.PRIMARY.inflammatory, 'Inflammatory carcinoma of breast');
        c.bodySite = [cc(C.BREAST_SITE.right)];
        break;
    case 'icd10':
        code = cc([SYS.icd10cm, p.code || 'C50.412'], 'Breast cancer (ICD-10-CM)');
        break;
    case 'icd10-nodot':
        code = cc([SYS.icd10cm, (p.code || 'C50.412').replace('.', '')], 'Breast cancer (ICD-10-CM, undotted)');
        break;
    case 'icdo3':
        code = cc(C.PRIMARY.genericMalignant, 'Malignant neoplastic disease');
        c.extension = [{ url: C.EXT.histology, valueCodeableConcept: cc(p.lobular ? C.HISTO.ilcO3 : C.HISTO.idcO3) }];
        c.bodySite = [cc(C.BREAST_SITE.topoUpperOuter)];
        break;
    default:
        throw new Error(`unknown primary style ${p.style}`);
    }
    if (p.stageIV) {
        c.stage = [{ summary: sct(C.TNM.sctValue.IV, 'Stage IV'), type: sct(C.TNM.method) }];
    }
    r.add('primary', finishCondition(r, c, code));
}

function metCode(m) {
    const s = C.SITE[m.site];
    const c = conditionBase(m.day, m.verification);
    let code;
    switch (m.style) {
    case 'sct':
        code = sct(s.sct, `Secondary malignant neoplasm (${m.site})`);
        break;
    case 'icd':
        code = cc([SYS.icd10cm, s.icd], `Secondary malignant neoplasm (${m.site})`);
        break;
    case 'icd-nodot':
        code = cc([SYS.icd10cm, s.icd.replace('.', '')], `Secondary malignant neoplasm (${m.site})`);
        break;
    case 'generic':
        if (!s.body) throw new Error(`site ${m.site} has no body structure code`);
        code = cc(C.MET_GENERIC, 'Secondary malignant neoplastic disease');
        c.bodySite = [sct(s.body)];
        break;
    case 'icdo3':
        if (!s.body) throw new Error(`site ${m.site} has no body structure code`);
        code = cc(C.MET_GENERIC, 'Secondary malignant neoplastic disease');
        c.extension = [{ url: C.EXT.histology, valueCodeableConcept: cc(C.HISTO.metIdcO3) }];
        c.bodySite = [sct(s.body)];
        break;
    case 'unsited':
        code = cc(C.MET_GENERIC, 'Secondary malignant neoplastic disease, site not stated');
        break;
    default:
        throw new Error(`unknown metastasis style ${m.style}`);
    }
    return { c, code };
}

function addMets(r) {
    for (const m of r.spec.mets || []) {
        const { c, code } = metCode(m);
        if (m.related && r.spec.primary) {
            c.extension = (c.extension || []).concat([{ url: C.EXT.related, valueReference: { reference: REF + 'primary' } }]);
        }
        r.add(m.key, finishCondition(r, c, code));
    }
}

function addSymptomatic(r) {
    if (r.spec.symptomatic !== 'skinCondition') return;
    const c = conditionBase(0);
    r.add('skin-involvement', finishCondition(r, c, cc(C.SYMPT.skinInvolvement, 'Skin involvement by breast carcinoma')));
}

function tnmValue(style, v) {
    if (style === 'mcode') return { valueCodeableConcept: sct(C.TNM.sctValue[v]) };
    if (style === 'ajcc') {
        if (C.TNM.ajccValue[v]) return { valueCodeableConcept: cc([SYS.ajcc, C.TNM.ajccValue[v]]) };
        /* STU2 allowed SNOMED values through the Max value set */
        return { valueCodeableConcept: sct(C.TNM.sctValue[v]) };
    }
    if (style === 'legacy') return { valueCodeableConcept: sct(C.TNM.legacyValue[v]) };
    throw new Error(`unknown tnm style ${style}`);
}

function addTnm(r) {
    const t = r.spec.tnm;
    if (!t) return;
    const codes = t.style === 'mcode' ? C.TNM.mcode : C.TNM.loinc;
    const mk = (part) => (t.style === 'mcode' ? sct(codes[part]) : loinc(codes[part]));
    const catTnm = t.style === 'legacy' ? 'imaging' : 'survey';
    const common = (part) => ({
        day: t.day || 0,
        category: part === 'stage' && t.style === 'legacy' ? 'laboratory' : catTnm,
        focusPrimary: t.style !== 'legacy',
        method: t.style === 'mcode' ? sct(C.TNM.method, 'AJCC 8th edition') : undefined,
    });
    const members = [];
    for (const part of ['t', 'n', 'm']) {
        if (!t[part]) continue;
        r.obs(`tnm-${part}`, mk(part), { ...common(part), value: tnmValue(t.style, t[part]) });
        members.push({ reference: REF + `tnm-${part}` });
    }
    if (t.stage) {
        r.obs('tnm-stage', mk('stage'), {
            ...common('stage'),
            value: tnmValue(t.style, t.stage),
            hasMember: t.style === 'legacy' ? undefined : members,
        });
    }
}

function receptor(r, which, spec) {
    if (!spec) return;
    const day = spec.day === undefined ? 3 : spec.day;
    const isEr = which === 'er';
    const key = spec.key || which;
    const opts = { day, status: spec.status };
    switch (spec.style) {
    case 'coded':
        r.obs(key, loinc(isEr ? C.RCP.erCoded : C.RCP.prCoded), { ...opts, value: { valueCodeableConcept: cc(spec.pos ? C.RCP.pos : C.RCP.neg) } });
        break;
    case 'synthea':
        r.obs(key, loinc(isEr ? C.RCP.erCoded : C.RCP.prCoded), { ...opts, value: { valueCodeableConcept: cc(spec.pos ? C.RCP.posSct : C.RCP.negSct) } });
        break;
    case 'pct':
        r.obs(key, loinc(isEr ? C.RCP.erPct : C.RCP.prPct), {
            ...opts, value: { valueQuantity: { value: spec.pct, unit: '%', system: SYS.ucum, code: '%' } },
        });
        break;
    case 'interp':
        /* presence test reported only through interpretation, no value */
        r.obs(key, loinc(isEr ? C.RCP.erTissue : C.RCP.prTissue), {
            ...opts, interpretation: [cc([SYS.interp, spec.pos ? 'POS' : 'NEG'])],
        });
        break;
    case 'disorder': {
        const v = isEr ? (spec.pos ? C.RCP.erPosDisorder : C.RCP.erNegDisorder) : spec.pos ? C.RCP.prPosDisorder : C.RCP.prNegDisorder;
        r.obs(key, loinc(isEr ? C.RCP.erInterp : C.RCP.prInterp), { ...opts, value: { valueCodeableConcept: cc(v) } });
        break;
    }
    default:
        throw new Error(`unknown receptor style ${spec.style}`);
    }
}

function addHer2(r) {
    const h = r.spec.her2;
    if (!h) return;
    if (h.ihc !== undefined && h.ihc !== null) {
        r.obs('her2-ihc', loinc(C.RCP.her2Ihc), { day: 3, value: { valueCodeableConcept: cc([SYS.loinc, C.RCP.ihc[h.ihc]]) } });
    }
    if (h.ish !== undefined && h.ish !== null) {
        let v;
        if (h.ishStyle === 'posneg') v = h.ish ? C.RCP.pos : C.RCP.neg;
        else v = h.ish ? C.RCP.detected : C.RCP.notDetected;
        r.obs('her2-ish', loinc(C.RCP.her2Ish), { day: 10, value: { valueCodeableConcept: cc(v) } });
    }
    if (h.overall !== undefined && h.overall !== null) {
        r.obs('her2-overall', loinc(C.RCP.her2Overall), { day: 3, value: { valueCodeableConcept: cc(h.overall ? C.RCP.pos : C.RCP.neg) } });
    }
}

function addPs(r) {
    const p = r.spec.ps;
    if (!p) return;
    const day = p.day === undefined ? 7 : p.day;
    if (p.kind === 'ecog') {
        const la = cc([SYS.loinc, C.PS.ecogLA[p.value]]);
        if (p.style === 'int') {
            r.obs('ecog', loinc(C.PS.ecog), { day, category: 'survey', value: { valueInteger: p.value }, interpretation: [la] });
        } else if (p.style === 'coded') {
            r.obs('ecog', loinc(C.PS.ecog), { day, category: 'survey', value: { valueCodeableConcept: la } });
        } else if (p.style === 'interpObs') {
            r.obs('ecog', loinc(C.PS.ecogInterp), { day, category: 'survey', value: { valueCodeableConcept: la } });
        } else throw new Error(`unknown ecog style ${p.style}`);
    } else if (p.kind === 'kps') {
        r.obs('karnofsky', loinc(C.PS.kps), {
            day, category: 'survey', value: { valueInteger: p.value }, interpretation: [cc([SYS.loinc, C.PS.kpsLA[p.value]])],
        });
    } else throw new Error(`unknown ps kind ${p.kind}`);
}

function responseObservation(r, key, resp) {
    const code = loinc(resp.style === 'stu3' ? C.RESP.stu3 : C.RESP.stu1);
    return r.obs(key, code, {
        day: resp.day,
        status: resp.status,
        category: resp.style === 'synthea' ? 'therapy' : 'survey',
        focusPrimary: resp.style !== 'synthea',
        value: { valueCodeableConcept: cc(C.RESP[resp.value]) },
    });
}

function addResponses(r) {
    (r.spec.responses || []).forEach((resp, i) => responseObservation(r, resp.key || `response-${i + 1}`, resp));
}

function addExtras(r) {
    for (const x of r.spec.extras || []) {
        const [kind, arg] = Array.isArray(x) ? x : [x];
        switch (kind) {
        case 'size':
            r.obs('tumour-size', loinc(C.OTHER.tumourSize), {
                day: 1, category: 'imaging', method: sct(C.OTHER.ultrasound),
                component: [{ code: loinc(C.OTHER.longestDim), valueQuantity: { value: arg || 32, unit: 'mm', system: SYS.ucum, code: 'mm' } }],
            });
            break;
        case 'grade': {
            const g = { 1: C.OTHER.gradeLow, 2: C.OTHER.gradeInter, 3: C.OTHER.gradeHigh }[arg || 2];
            r.obs('grade', cc(C.OTHER.gradeCode), { day: 3, value: { valueCodeableConcept: sct(g) } });
            break;
        }
        case 'ki67':
            r.obs('ki67', loinc(C.OTHER.ki67), { day: 3, value: { valueQuantity: { value: arg || 25, unit: '%', system: SYS.ucum, code: '%' } } });
            break;
        case 'pdl1':
            r.obs('pdl1', loinc(C.OTHER.pdl1Tps), { day: 12, value: { valueQuantity: { value: arg || 10, unit: '%', system: SYS.ucum, code: '%' } } });
            break;
        case 'gbrca':
        case 'pik3ca': {
            const gene = kind === 'gbrca' ? C.OTHER.brca1 : C.OTHER.pik3ca;
            const src = kind === 'gbrca' ? C.OTHER.germline : C.OTHER.somatic;
            r.obs(kind, loinc(C.OTHER.variant), {
                day: 20,
                value: { valueCodeableConcept: loinc(C.OTHER.present) },
                component: [
                    { code: loinc(C.OTHER.geneStudied), valueCodeableConcept: cc([SYS.hgnc, gene]) },
                    { code: loinc(C.OTHER.sourceClass), valueCodeableConcept: loinc(src) },
                ],
            });
            break;
        }
        case 'ca153':
            r.obs('ca153', loinc(C.OTHER.ca153), { day: 2, value: { valueQuantity: { value: arg || 48, unit: 'U/mL', system: SYS.ucum, code: 'U/mL' } } });
            break;
        case 'alp':
            r.obs('alp', loinc(C.OTHER.alp), { day: 2, value: { valueQuantity: { value: arg || 140, unit: 'U/L', system: SYS.ucum, code: 'U/L' } } });
            break;
        case 'weight':
            r.obs(`weight-${arg || 0}`, loinc(C.OTHER.bodyWeight), {
                day: arg || 0, category: 'vital-signs', value: { valueQuantity: { value: 64.5, unit: 'kg', system: SYS.ucum, code: 'kg' } },
            });
            break;
        case 'hb':
            r.obs(`hb-${arg || 0}`, loinc(C.OTHER.haemoglobin), {
                day: arg || 0, value: { valueQuantity: { value: 12.1, unit: 'g/dL', system: SYS.ucum, code: 'g/dL' } },
            });
            break;
        default:
            throw new Error(`unknown extra ${kind}`);
        }
    }
}

/* Noise that must not change the decision: entered-in-error / refuted data. */
function addNoise(r) {
    for (const n of r.spec.noise || []) {
        if (n.kind === 'response') {
            responseObservation(r, n.key, { ...n, status: 'entered-in-error' });
        } else if (n.kind === 'receptor') {
            receptor(r, n.which, { ...n, status: 'entered-in-error' });
        } else if (n.kind === 'met') {
            const { c, code } = metCode(n);
            r.add(n.key, finishCondition(r, c, code));
        } else throw new Error(`unknown noise ${n.kind}`);
    }
}

/* The resources of one patient, in Bundle order, with placeholder references. */
function buildResources(spec) {
    const r = new Res(spec);
    const pat = {
        resourceType: 'Patient',
        identifier: [{ system: 'urn:dnmbc:synthetic', value: r.pid }],
        name: [{ family: spec.name[1], given: [spec.name[0]] }],
        gender: spec.gender || 'female',
        birthDate: spec.birthDate,
    };
    r.add('patient', pat);
    addPrimary(r);
    addMets(r);
    addSymptomatic(r);
    addTnm(r);
    receptor(r, 'er', spec.er);
    receptor(r, 'pr', spec.pr);
    addHer2(r);
    addPs(r);
    addResponses(r);
    addExtras(r);
    addNoise(r);
    return r;
}

function resolveRefs(value, resolve) {
    if (Array.isArray(value)) return value.map((v) => resolveRefs(v, resolve));
    if (value && typeof value === 'object') {
        const out = {};
        for (const [k, v] of Object.entries(value)) out[k] = resolveRefs(v, resolve);
        return out;
    }
    if (typeof value === 'string' && value.startsWith(REF)) return resolve(value.slice(REF.length));
    return value;
}

function toTransaction(spec, seed) {
    const r = buildResources(spec);
    const urn = (key) => `urn:uuid:${uuidFor(seed, r.pid, key)}`;
    const keys = new Set(r.list.map((x) => x.key));
    const resolve = (key) => {
        if (!keys.has(key)) throw new Error(`${r.pid}: reference to missing ${key}`);
        return urn(key);
    };
    return {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: r.list.map(({ key, resource }) => ({
            fullUrl: urn(key),
            resource: resolveRefs(resource, resolve),
            request: { method: 'POST', url: resource.resourceType },
        })),
    };
}

/* Short logical ids, e.g. "s07-er"; the Patient is "s07". */
function logicalId(pid, key) {
    const short = 's' + pid.slice(6);
    return key === 'patient' ? short : `${short}-${key}`;
}

function toServerBundle(spec, type, base) {
    const r = buildResources(spec);
    const typeOf = new Map(r.list.map((x) => [x.key, x.resource.resourceType]));
    const resolve = (key) => `${typeOf.get(key)}/${logicalId(r.pid, key)}`;
    const entry = r.list.map(({ key, resource }) => {
        const res = { resourceType: resource.resourceType, id: logicalId(r.pid, key), ...resolveRefs(resource, resolve) };
        const e = { fullUrl: `${base}/${resource.resourceType}/${res.id}`, resource: res };
        if (type === 'searchset') e.search = { mode: 'match' };
        if (type === 'transaction') e.request = { method: 'PUT', url: `${resource.resourceType}/${res.id}` };
        return e;
    });
    const b = { resourceType: 'Bundle', type };
    if (type === 'searchset') b.total = entry.length;
    b.entry = entry;
    return b;
}

/* A standalone resource for later addition to a seeded patient (manifest).
 * The subject is the placeholder "Patient/{{PATIENT_ID}}". */
function standaloneResponse(spec, resp, key) {
    const r = new Res({ ...spec, primary: null });
    const o = responseObservation(r, key, resp);
    return resolveRefs(o, (k) => {
        if (k !== 'patient') throw new Error('standalone resource may only reference the patient');
        return 'Patient/{{PATIENT_ID}}';
    });
}

module.exports = { buildResources, toTransaction, toServerBundle, standaloneResponse, addDays, uuidFor, pidOf, logicalId };
