'use strict';
/*
 * Pseudo-random patients for benchmarks (--count N --seed S).
 *
 * Each patient is constructed from a chosen target: the target fixes the
 * recommendation, and every random choice afterwards is drawn only from the
 * options that keep it (e.g. a curative-lrt patient gets no brain site, at
 * most one visceral site, a non-TNBC subtype, good or unknown performance
 * status and a latest response that is not progression).  The expected values
 * in the manifest are therefore known by construction.
 */
const C = require('./codes');
const { addDays } = require('./build');

/* xorshift32 over a 32-bit state derived from the seed string (FNV-1a). */
function makeRng(seed) {
    let h = 0x811c9dc5;
    for (const ch of String(seed)) {
        h ^= ch.codePointAt(0);
        h = Math.imul(h, 0x01000193) >>> 0;
    }
    let s = h || 1;
    const next = () => {
        s ^= s << 13; s >>>= 0;
        s ^= s >>> 17;
        s ^= s << 5; s >>>= 0;
        return s / 4294967296;
    };
    const rng = {
        float: next,
        int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)), /* inclusive */
        pick: (arr) => arr[Math.floor(next() * arr.length)],
        chance: (p) => next() < p,
        shuffle: (arr) => {
            const a = arr.slice();
            for (let i = a.length - 1; i > 0; i--) {
                const j = Math.floor(next() * (i + 1));
                [a[i], a[j]] = [a[j], a[i]];
            }
            return a;
        },
    };
    return rng;
}

const TARGETS = [
    ['not-applicable', 'no-metastasis'],
    ['not-applicable', 'recurrent'],
    ['not-applicable', 'no-primary'],
    ['insufficient-data', 'subtype'],
    ['insufficient-data', 'her2-equivocal'],
    ['insufficient-data', 'sites'],
    ['upfront-systemic'],
    ['second-line-systemic'],
    ['curative-lrt'],
    ['continue-systemic', 'brain'],
    ['continue-systemic', 'two-visceral'],
    ['continue-systemic', 'tnbc'],
    ['continue-systemic', 'performance'],
    ['continue-systemic', 'many-sites'],
];

const GIVEN = ['Ada', 'Bea', 'Cleo', 'Dora', 'Eira', 'Flo', 'Gia', 'Hedda', 'Ines', 'Jola',
    'Kaia', 'Lumi', 'Mira', 'Nova', 'Orla', 'Pia', 'Rhea', 'Sela', 'Tove', 'Vada'];
const FAMILY = ['Benchley', 'Loadwell', 'Stressman', 'Volumer', 'Throughby', 'Latenz',
    'Sampleton', 'Randall', 'Seedwell', 'Fuzzard'];

const SUBTYPES = {
    'HR+/HER2-': [true, false],
    'HR+/HER2+': [true, true],
    'HR-/HER2+': [false, true],
    TNBC: [false, false],
};
const NONVISCERAL = ['bone', 'boneSpine', 'distantLN', 'softTissue'];
const VISCERAL_SITES = ['liver', 'lung', 'pleura', 'peritoneum'];

function siteStyle(rng, site) {
    const s = C.SITE[site];
    const styles = ['sct'];
    if (site !== 'softTissue') styles.push('icd', 'icd-nodot'); /* C79.89 is "other sites" */
    if (s.body) styles.push('generic', 'icdo3');
    return rng.pick(styles);
}

function receptorSpec(rng, pos) {
    const style = rng.pick(['coded', 'synthea', 'pct', 'interp', 'disorder']);
    const out = { style, pos };
    if (style === 'pct') out.pct = pos ? rng.pick([1, 5, 30, 70, 90, 100]) : 0;
    return out;
}

function her2Spec(rng, pos) {
    const way = rng.int(0, 2);
    if (pos) {
        if (way === 0) return { ihc: 3 };
        if (way === 1) return { ihc: 2, ish: true, ishStyle: rng.pick(['detected', 'posneg']) };
        return { overall: true };
    }
    if (way === 0) return { ihc: rng.pick([0, 1]) };
    if (way === 1) return { ihc: 2, ish: false, ishStyle: rng.pick(['detected', 'posneg']) };
    return { overall: false };
}

function psSpec(rng, kind) {
    /* kind: 'good', 'bad', 'none' (absent), 'any' (may be absent) */
    if (kind === 'none' || (kind === 'any' && rng.chance(0.25))) return undefined;
    const good = kind === 'good' || (kind === 'any' && rng.chance(0.7));
    if (rng.chance(0.7)) {
        const value = good ? rng.int(0, 1) : rng.int(2, 4);
        return { kind: 'ecog', style: rng.pick(['int', 'coded', 'interpObs']), value };
    }
    return { kind: 'kps', value: good ? rng.pick([70, 80, 90, 100]) : rng.pick([40, 50, 60]) };
}

function responses(rng, last, count, noEarlierPD) {
    /* `count` responses after diagnosis; the latest has meaning `last`
     * ('PD' or 'notPD'); earlier ones are anything, except that
     * `noEarlierPD` (curative-lrt: no progression at any time) keeps them
     * free of progression. */
    const styleOf = () => rng.pick(['stu3', 'stu3', 'stu1', 'synthea']);
    const valueFor = (style, pd) => {
        if (style === 'synthea') return pd ? 'worsening' : 'improving';
        if (pd) return rng.pick(['worse', 'worse', 'tumourProgression']);
        return rng.pick(['improved', 'stable', 'fullRemission', 'partialRemission']);
    };
    const out = [];
    let day = rng.int(60, 120);
    for (let i = 0; i < count; i++) {
        const style = styleOf();
        const isLast = i === count - 1;
        const pd = isLast ? last === 'PD' : rng.chance(0.4) && !noEarlierPD;
        out.push({ style, value: valueFor(style, pd), day });
        day += rng.int(30, 120);
    }
    return out;
}

function pickSites(rng, target, reason) {
    const uniq = (keys) => {
        /* keep one key per feature site so the construction stays exact */
        const seen = new Set();
        return keys.filter((k) => !seen.has(C.FEATURE_SITE[k]) && seen.add(C.FEATURE_SITE[k]));
    };
    if (target === 'curative-lrt' || (target === 'continue-systemic' && (reason === 'tnbc' || reason === 'performance'))) {
        const n = rng.int(1, 3);
        const keys = rng.shuffle(NONVISCERAL).slice(0, n);
        if (n < 3 && rng.chance(0.5)) keys.push(rng.pick(VISCERAL_SITES));
        return uniq(keys);
    }
    if (reason === 'brain') return uniq(['brain', ...rng.shuffle(NONVISCERAL.concat(VISCERAL_SITES)).slice(0, rng.int(0, 2))]);
    if (reason === 'two-visceral') return uniq(rng.shuffle(VISCERAL_SITES).slice(0, rng.int(2, 3)));
    if (reason === 'many-sites') {
        return uniq(['bone', 'distantLN', 'softTissue', rng.pick(VISCERAL_SITES)]);
    }
    const all = NONVISCERAL.concat(VISCERAL_SITES, ['brain']);
    return uniq(rng.shuffle(all).slice(0, rng.int(1, 3)));
}

function randomSpec(rng, i, seed, width) {
    const [target, reason] = TARGETS[i % TARGETS.length];
    const num = String(i + 1).padStart(width, '0');
    const dx = addDays('2024-01-01', rng.int(0, 500));
    const spec = {
        n: i + 1,
        pid: `synth-r${seed}-${num}`,
        file: `patient-${num}.json`,
        name: [rng.pick(GIVEN), rng.pick(FAMILY)],
        gender: 'female',
        birthDate: addDays(dx, -rng.int(35 * 365, 80 * 365)),
        dx,
        primary: {
            style: rng.pick(['sct-left', 'sct-right', 'sct-idc-left', 'sct-ilc-right', 'sct-primary',
                'synthea', 'icd10', 'icd10-nodot', 'icdo3']),
            code: rng.pick(['C50.412', 'C50.911', 'C50.212', 'C50.811']),
        },
        extras: [],
    };

    /* palliative: symptomatic primary, added by construction */
    const applicable = target !== 'not-applicable';
    /* Rules version 2: T4d and an inflammatory carcinoma alone are not a
     * symptomatic primary; they stay in the draw (same random stream) as
     * non-symptomatic variants. */
    const drawn = rng.chance(0.3);
    let symptomWay = null;
    let symptomatic = false;
    if (drawn) {
        symptomWay = rng.pick(['T4b', 'T4d', 'skinCondition', 'inflammatory']);
        symptomatic = symptomWay === 'T4b' || symptomWay === 'skinCondition';
        if (symptomWay === 'inflammatory') spec.primary = { style: 'inflammatory' };
        if (symptomWay === 'skinCondition') spec.symptomatic = 'skinCondition';
    }

    /* subtype */
    let subtype;
    if (target === 'curative-lrt') subtype = rng.pick(['HR+/HER2-', 'HR+/HER2+', 'HR-/HER2+']);
    else if (reason === 'tnbc') subtype = 'TNBC';
    else subtype = rng.pick(Object.keys(SUBTYPES));
    const [hrPos, her2Pos] = SUBTYPES[subtype];
    if (hrPos) {
        /* HR+ needs only one positive receptor; the other may be either */
        const erPos = rng.chance(0.8);
        spec.er = receptorSpec(rng, erPos);
        spec.pr = receptorSpec(rng, erPos ? rng.chance(0.7) : true);
    } else {
        spec.er = receptorSpec(rng, false);
        spec.pr = receptorSpec(rng, false);
    }
    spec.her2 = her2Spec(rng, her2Pos);
    let expectedSubtype = subtype;
    if (reason === 'subtype') {
        if (rng.chance(0.5)) {
            delete spec.er; delete spec.pr; delete spec.her2;
        } else {
            spec.er = receptorSpec(rng, false); /* ER-, PR missing: HR unknown */
            delete spec.pr;
        }
        expectedSubtype = 'unknown';
    } else if (reason === 'her2-equivocal') {
        spec.her2 = { ihc: 2 };
        expectedSubtype = 'unknown';
    }

    /* metastases */
    const tnmStyle = rng.pick(['mcode', 'ajcc', 'legacy']);
    let withTnm = rng.chance(0.6) || symptomWay === 'T4b' || symptomWay === 'T4d';
    let mCat = 'M1';
    spec.mets = [];
    if (reason === 'no-metastasis') {
        mCat = 'M0';
    } else if (reason === 'sites') {
        if (rng.chance(0.5)) {
            withTnm = true;
        } else {
            spec.mets.push({ key: 'met-1', site: 'bone', style: 'unsited', day: rng.int(-20, 60) });
            if (rng.chance(0.5) && symptomWay !== 'T4b' && symptomWay !== 'T4d') withTnm = false;
        }
    } else {
        const recurrent = reason === 'recurrent';
        if (recurrent) mCat = 'M0';
        const sites = pickSites(rng, target, reason);
        const day0 = recurrent ? rng.int(91, 300) : rng.int(-30, 90);
        sites.forEach((site, k) => {
            const day = recurrent ? day0 + rng.int(0, 60) : Math.min(90, day0 + rng.int(0, 20));
            spec.mets.push({ key: `met-${k + 1}`, site, style: siteStyle(rng, site), day, related: rng.chance(0.3) });
        });
    }
    if (reason === 'no-primary') {
        spec.primary = null;
        delete spec.er; delete spec.pr; delete spec.her2;
        expectedSubtype = 'unknown';
        withTnm = false;
    }
    if (withTnm) {
        let style = tnmStyle;
        let t = rng.pick(['T2', 'T3']);
        if (symptomWay === 'T4b' || symptomWay === 'T4d') {
            t = symptomWay;
            if (style === 'legacy') style = 'mcode'; /* legacy codes have no T4 subcategories */
        }
        spec.tnm = { style, t, n: rng.pick(['N0', 'N1']), m: mCat };
        if (mCat === 'M1' && rng.chance(0.6)) spec.tnm.stage = 'IV';
    }

    /* performance status and responses */
    if (target === 'curative-lrt') spec.ps = psSpec(rng, rng.chance(0.15) ? 'none' : 'good');
    else if (reason === 'performance') spec.ps = psSpec(rng, 'bad');
    else if (target === 'continue-systemic') spec.ps = psSpec(rng, 'good');
    else spec.ps = psSpec(rng, 'any');
    if (spec.ps === undefined) delete spec.ps;

    if (target === 'second-line-systemic') spec.responses = responses(rng, 'PD', rng.int(1, 3));
    else if (target === 'curative-lrt') spec.responses = responses(rng, 'notPD', rng.int(1, 3), true);
    else if (target === 'continue-systemic') spec.responses = responses(rng, 'notPD', rng.int(1, 3));
    else if (target === 'upfront-systemic') spec.responses = [];
    else spec.responses = rng.chance(0.5) ? responses(rng, rng.pick(['PD', 'notPD']), rng.int(1, 2)) : [];

    /* The performance status is recorded with the latest response, so it
     * is never out of date (rules version 2: older than 180 days is stale). */
    if (spec.ps && spec.responses.length) spec.ps.day = spec.responses[spec.responses.length - 1].day;

    /* filler to reach a realistic size: labs, vitals, other features */
    const fillers = rng.shuffle(['size', 'grade', 'ki67', 'ca153', 'alp', 'pdl1', 'gbrca', 'pik3ca']);
    const nf = rng.int(1, 5);
    for (const f of fillers.slice(0, nf)) spec.extras.push([f, undefined]);
    const visits = rng.int(2, 5);
    for (let v = 0; v < visits; v++) {
        const day = v * rng.int(20, 40);
        spec.extras.push([rng.pick(['weight', 'hb']), day]);
    }
    /* noise that must be ignored: an entered-in-error status contradicting
     * the latest real one, dated after it */
    if (rng.chance(0.2) && spec.responses.length) {
        const last = spec.responses[spec.responses.length - 1];
        const lastPD = C.RESP_MEANING[last.value] === 'PD';
        spec.noise = [{ kind: 'response', key: 'response-eie', style: 'stu3', value: lastPD ? 'improved' : 'worse', day: last.day + 30 }];
    }
    /* dedupe filler keys (weight-<day> / hb-<day>) */
    const seen = new Set();
    spec.extras = spec.extras.filter(([k, a]) => {
        const id = `${k}-${a}`;
        if (seen.has(id)) return false;
        seen.add(id);
        return true;
    }).map(([k, a]) => (a === undefined ? k : [k, a]));

    spec.expected = {
        recommendation: target,
        palliative: applicable && symptomatic,
        subtype: expectedSubtype,
    };
    spec.why = `constructed for ${target}${reason ? ` (${reason})` : ''}${symptomatic ? `, symptomatic primary via ${symptomWay}` : ''}`;
    spec.coding = `random styles: primary ${spec.primary ? spec.primary.style : 'none'}, TNM ${spec.tnm ? spec.tnm.style : 'none'}`;
    return spec;
}

function randomSpecs(count, seed) {
    const rng = makeRng(seed);
    const width = Math.max(2, String(count).length);
    const out = [];
    for (let i = 0; i < count; i++) out.push(randomSpec(rng, i, seed, width));
    return out;
}

module.exports = { randomSpecs, makeRng, TARGETS };
