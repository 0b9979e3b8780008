'use strict';
/*
 * Code systems and codes used by the synthetic patients.  Every code here is
 * one that docs/codes.md lists for the feature in question
 * (the section is named in the comment), except the noise Observations (body
 * weight, haemoglobin), which are there precisely because the adapter must
 * ignore them.
 */

const SYS = {
    sct: 'http://snomed.info/sct',
    loinc: 'http://loinc.org',
    icd10cm: 'http://hl7.org/fhir/sid/icd-10-cm',
    icdo3: 'http://terminology.hl7.org/CodeSystem/icd-o-3',
    ucum: 'http://unitsofmeasure.org',
    ajcc: 'http://cancerstaging.org',
    ncit: 'http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl',
    hgnc: 'http://www.genenames.org',
    obsCat: 'http://terminology.hl7.org/CodeSystem/observation-category',
    interp: 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation',
    clin: 'http://terminology.hl7.org/CodeSystem/condition-clinical',
    ver: 'http://terminology.hl7.org/CodeSystem/condition-ver-status',
    condCat: 'http://terminology.hl7.org/CodeSystem/condition-category',
};

const MCODE = 'http://hl7.org/fhir/us/mcode/StructureDefinition/';
const EXT = {
    histology: MCODE + 'mcode-histology-morphology-behavior',
    related: 'http://hl7.org/fhir/StructureDefinition/condition-related',
};

/* §2.3, §2.4, §2.2: primary breast cancer Condition codes. */
const PRIMARY = {
    sctLeftFemale: [SYS.sct, '353431000119107'],
    sctRightFemale: [SYS.sct, '353511000119101'],
    sctIdcLeft: [SYS.sct, '1080101000119105'],
    sctIlcRight: [SYS.sct, '1080341000119105'],
    sctPrimaryBreast: [SYS.sct, '372137005'],
    sctMaleBreast: [SYS.sct, '372095001'],
    synthea: [SYS.sct, '254837009'],
    inflammatory: [SYS.sct, '254840009'],
    genericMalignant: [SYS.sct, '363346000'],
};

/* §2.5 histology, §2.6 laterality / body structures. */
const HISTO = {
    idcSct: [SYS.sct, '82711006'],
    ilcSct: [SYS.sct, '89740008'],
    idcO3: [SYS.icdo3, '8500/3'],
    ilcO3: [SYS.icdo3, '8520/3'],
    metIdcO3: [SYS.icdo3, '8500/6'],
};
const BREAST_SITE = {
    left: [SYS.sct, '80248007'],
    right: [SYS.sct, '73056007'],
    topoUpperOuter: [SYS.icdo3, 'C50.4'],
};

/*
 * §3.2: distant metastasis sites.  For each feature site: a SNOMED
 * secondary-neoplasm disorder, an ICD-10-CM code (dotted) and a SNOMED body
 * structure for the generic 128462008 + bodySite route.
 */
const MET_GENERIC = [SYS.sct, '128462008'];
const SITE = {
    bone: { sct: '94222008', icd: 'C79.51', body: '272673000' },
    boneSpine: { sct: '94602001', icd: 'C79.51', body: '421060004' },
    boneRib: { sct: '94521000', icd: 'C79.51', body: '113197003' },
    liver: { sct: '94381002', icd: 'C78.7', body: '10200004' },
    lung: { sct: '94391008', icd: 'C78.01', body: '3341006' },
    brain: { sct: '94225005', icd: 'C79.31', body: '12738006' },
    pleura: { sct: '94493005', icd: 'C78.2', body: '3120008' },
    peritoneum: { sct: '188445006', icd: 'C78.6', body: null },
    /* mediastinal / intrathoracic nodes: distant for a breast primary */
    distantLN: { sct: '94408005', icd: 'C77.1', body: null },
    skin: { sct: '94579000', icd: 'C79.2', body: '39937001' },
    softTissue: { sct: '94595000', icd: 'C79.89', body: '1490004' },
};
/* The feature site each SITE key maps to (docs/clinical-rules.md §1). */
const FEATURE_SITE = {
    bone: 'bone', boneSpine: 'bone', boneRib: 'bone', liver: 'liver', lung: 'lung',
    brain: 'brain', pleura: 'pleura', peritoneum: 'peritoneum', distantLN: 'distant-ln',
    skin: 'soft-tissue', softTissue: 'soft-tissue',
};
const VISCERAL = new Set(['liver', 'lung', 'brain', 'pleura', 'peritoneum', 'other-visceral']);

/* §4: TNM observables and values. */
const TNM = {
    mcode: { t: '399504009', n: '399534004', m: '399387003', stage: '399537006' },
    loinc: { t: '21905-5', n: '21906-3', m: '21907-1', stage: '21908-9' },
    method: '897275008', /* AJCC 8th edition */
    /* SNOMED AJCC qualifier values, §4.2-4.5 */
    sctValue: {
        T2: '1228929004', T3: '1228938002', T4: '1228944003', T4b: '1228946001',
        T4d: '1228948000', N0: '1229967007', N1: '1229973008', N2: '1229978004',
        M0: '1229901006', M1: '1229903009', IIB: '1222769001', IV: '1222837003',
    },
    /* AJCC code system strings (mCODE STU1/2 examples), §4.5 */
    ajccValue: { T3: 'cT3', N0: 'cN0', M0: 'cM0', M1: 'cM1' },
    /* Synthea legacy SNOMED categories and stage, §4.6 */
    legacyValue: {
        T2: '67673008', T3: '14410001', T4: '65565005', N0: '62455006', N1: '53623008',
        M0: '30893008', M1: '55440008', IV: '258228008',
    },
};

/* §6: receptor Observations and values. */
const RCP = {
    erCoded: '85337-4', prCoded: '85339-0',
    erPct: '85329-1', prPct: '85325-9',
    erTissue: '40556-3', prTissue: '40557-1',
    erInterp: '16112-5', prInterp: '16113-3',
    her2Overall: '48676-1', her2Ihc: '85319-2', her2Ish: '85318-4',
    pos: [SYS.loinc, 'LA6576-8'], neg: [SYS.loinc, 'LA6577-6'],
    posSct: [SYS.sct, '10828004'], negSct: [SYS.sct, '260385009'],
    detected: [SYS.loinc, 'LA11882-0'], notDetected: [SYS.loinc, 'LA11883-8'],
    erPosDisorder: [SYS.sct, '416053008'], erNegDisorder: [SYS.sct, '441117001'],
    prPosDisorder: [SYS.sct, '416561008'], prNegDisorder: [SYS.sct, '441118006'],
    ihc: ['LA6111-4', 'LA11841-6', 'LA11842-4', 'LA11843-2'], /* 0, 1+, 2+, 3+ */
};

/* §8: performance status. */
const PS = {
    ecog: '89247-1', ecogInterp: '89262-0', kps: '89243-0',
    ecogLA: ['LA9622-7', 'LA9623-5', 'LA9624-3', 'LA9625-0', 'LA9626-8', 'LA9627-6'],
    kpsLA: {
        100: 'LA29175-9', 90: 'LA29176-7', 80: 'LA29177-5', 70: 'LA29178-3',
        60: 'LA29179-1', 50: 'LA29180-9', 40: 'LA29181-7',
    },
};

/* §9: disease status / response. */
const RESP = {
    stu3: '97509-4', stu1: '88040-1',
    improved: [SYS.sct, '268910001'], stable: [SYS.sct, '359746009'],
    worse: [SYS.sct, '271299001'],
    fullRemission: [SYS.sct, '550991000124107'], partialRemission: [SYS.sct, '551001000124108'],
    improving: [SYS.sct, '385633008'], worsening: [SYS.sct, '230993007'],
    tumourProgression: [SYS.sct, '419835002'],
};
/* What each response value means for the decision (docs/clinical-rules.md §1). */
const RESP_MEANING = {
    improved: 'PR', stable: 'SD', worse: 'PD', fullRemission: 'CR', partialRemission: 'PR',
    improving: 'PR', worsening: 'PD', tumourProgression: 'PD',
};

/* §11: symptomatic primary. */
const SYMPT = {
    skinInvolvement: [SYS.sct, '403458008'],
};

/* §5, §7, §10: other features (not used by the decision). */
const OTHER = {
    tumourSize: '21889-1', longestDim: '33728-7', ultrasound: '16310003',
    gradeCode: [SYS.ncit, 'C18000'], gradeHigh: '1155707008', gradeInter: '1286893008',
    gradeLow: '1155708003',
    ki67: '85330-9', pdl1Tps: '83053-9',
    variant: '69548-6', geneStudied: '48018-6', sourceClass: '48002-0',
    present: 'LA9633-4', absent: 'LA9634-2', germline: 'LA6683-2',
    brca1: 'HGNC:1100', brca2: 'HGNC:1101', pik3ca: 'HGNC:8975', somatic: 'LA6684-0',
    ca153: '6875-9', alp: '6768-6',
    /* noise */
    haemoglobin: '718-7', bodyWeight: '29463-7',
};

module.exports = {
    SYS, EXT, PRIMARY, HISTO, BREAST_SITE, MET_GENERIC, SITE, FEATURE_SITE, VISCERAL,
    TNM, RCP, PS, RESP, RESP_MEANING, SYMPT, OTHER,
};
