'use strict';
/*
 * A second, independent reading of the clinical rules (version 2,
 * docs/clinical-rules.md §1-§4) applied to the
 * patient *specs* (not to FHIR).  The tests compare it with the hand-written
 * `expected` of every fixed patient and with the by-construction `expected`
 * of random patients, so a slip in either shows up as a failure.  It is not
 * used to produce any expected value.
 */
const C = require('./codes');

const WINDOW = 90; /* de novo window, days (docs/clinical-rules.md §1, our choice) */
const MAX_SITES = 3;
const MAX_VISCERAL = 1;

function ignoredCondition(v) {
    return v === 'entered-in-error' || v === 'refuted';
}

function receptorStatus(r) {
    if (!r || r.status === 'entered-in-error') return 'unknown';
    if (r.style === 'pct') return r.pct >= 1 ? 'pos' : 'neg';
    return r.pos ? 'pos' : 'neg';
}

/* ASCO/CAP 2018 with a coded ISH: amplified is positive whatever the IHC,
 * not amplified negative unless IHC 3+; without ISH the IHC decides. */
function her2Status(h) {
    if (!h) return 'unknown';
    if (h.ish === true) return 'pos';
    if (h.ish === false) return h.ihc === 3 ? 'pos' : 'neg';
    if (h.ihc === 3) return 'pos';
    if (h.ihc === 0 || h.ihc === 1) return 'neg';
    if (h.ihc === 2) return 'equivocal';
    if (h.overall === true) return 'pos';
    if (h.overall === false) return 'neg';
    return 'unknown';
}

function subtypeOf(spec) {
    const er = receptorStatus(spec.er);
    const pr = receptorStatus(spec.pr);
    let hr = 'unknown';
    if (er === 'pos' || pr === 'pos') hr = 'pos';
    else if (er === 'neg' && pr === 'neg') hr = 'neg';
    const her2 = her2Status(spec.her2);
    if (hr === 'unknown' || her2 === 'unknown' || her2 === 'equivocal') return 'unknown';
    if (hr === 'pos') return her2 === 'pos' ? 'HR+/HER2+' : 'HR+/HER2-';
    return her2 === 'pos' ? 'HR-/HER2+' : 'TNBC';
}

/* ECOG 0-1 good; Karnofsky 80+ good, 60 or less poor, 70 unverified; a
 * status more than 180 days before the latest response is stale. */
function psGood(ps, spec) {
    if (!ps) return 'unknown';
    const day = ps.day === undefined ? 7 : ps.day;
    const rs = (spec.responses || []).filter((r) => r.status !== 'entered-in-error' && r.day >= 0);
    const ref = rs.length ? Math.max(...rs.map((r) => r.day)) : 0;
    if (ref - day > 180) return 'unknown';
    if (ps.kind === 'ecog') return ps.value <= 1 ? 'yes' : 'no';
    if (ps.value >= 80) return 'yes';
    return ps.value <= 60 ? 'no' : 'unknown';
}

function progressedEver(spec) {
    return (spec.responses || []).some((r) => r.status !== 'entered-in-error' && r.day >= 0 &&
        C.RESP_MEANING[r.value] === 'PD');
}

function latestResponse(spec) {
    const rs = (spec.responses || []).filter((r) => r.status !== 'entered-in-error' && r.day >= 0);
    if (!rs.length) return null;
    const last = rs.reduce((a, b) => (b.day >= a.day ? b : a));
    return C.RESP_MEANING[last.value];
}

/* Lin: only bone, lung, liver and brain are counted. */
function m1Subgroup(allSites) {
    const sites = new Set([...allSites].filter((s) => ['bone', 'lung', 'liver', 'brain'].includes(s)));
    if (!sites.size) return 'unknown';
    if (sites.has('brain')) return 'M1c';
    if (sites.has('liver')) return sites.size > 1 ? 'M1c' : 'M1b';
    if (sites.size >= 2) return 'M1b';
    return 'M1a';
}

function evaluate(spec) {
    const primary = spec.primary && !ignoredCondition(spec.primary.verification);
    const mets = (spec.mets || []).filter((m) => !ignoredCondition(m.verification));
    const sites = new Set(mets.filter((m) => m.style !== 'unsited').map((m) => C.FEATURE_SITE[m.site]));
    const unsited = mets.some((m) => m.style === 'unsited');
    const t = spec.tnm;
    const m1AtDx = !!((t && (t.day || 0) <= WINDOW && (t.m === 'M1' || t.stage === 'IV')) || (spec.primary && spec.primary.stageIV));
    const metastatic = sites.size > 0 || unsited || m1AtDx;
    const deNovo = m1AtDx || mets.some((m) => m.day <= WINDOW);
    const subtype = subtypeOf(spec);
    /* T4a-c and skin findings; inflammatory (T4d) alone is not symptomatic */
    const symptomatic = !!(
        (t && ['T4a', 'T4b', 'T4c'].includes(t.t)) ||
        spec.symptomatic === 'skinCondition'
    );
    const out = { subtype, palliative: false, benefit: 'low', m1: m1Subgroup(sites) };
    if (!primary || !metastatic || !deNovo) {
        out.recommendation = 'not-applicable';
        return out;
    }
    out.palliative = symptomatic;
    if (subtype === 'unknown' || sites.size === 0) {
        out.recommendation = 'insufficient-data';
        return out;
    }
    const resp = latestResponse(spec);
    if (!resp) {
        out.recommendation = 'upfront-systemic';
        return out;
    }
    if (resp === 'PD') {
        out.recommendation = 'second-line-systemic';
        return out;
    }
    const visceral = [...sites].filter((s) => C.VISCERAL.has(s)).length;
    const lowBurden = !sites.has('brain') && visceral <= MAX_VISCERAL && sites.size <= MAX_SITES;
    const ps = psGood(spec.ps, spec);
    out.ps = ps === 'yes' ? 'met' : ps === 'no' ? 'not-met' : 'unverified';
    if (lowBurden && subtype !== 'TNBC' && ps !== 'no' && !progressedEver(spec)) {
        out.recommendation = 'curative-lrt';
        const bone = sites.size === 1 && sites.has('bone');
        const hrPos = subtype.startsWith('HR+');
        out.benefit = (bone || out.m1 === 'M1a') && hrPos ? 'high' : 'moderate';
        return out;
    }
    out.recommendation = 'continue-systemic';
    return out;
}

/* Apply a manifest "later" change to a spec (for expectedAfter). */
function applyLater(spec) {
    const l = spec.later;
    const s = JSON.parse(JSON.stringify(spec));
    if (l.kind === 'entered-in-error') {
        s.mets = s.mets.map((m) => (m.key === l.key ? { ...m, verification: 'entered-in-error' } : m));
    } else if (l.kind === 'progression') {
        s.responses = (s.responses || []).concat([l.response]);
    }
    return s;
}

module.exports = { evaluate, applyLater };
