#!/usr/bin/env node
// Summarize a results file produced by the http-cache-tests CLI
// (https://cache-tests.fyi, npm package `http-cache-tests`).
//
// Usage:
//   node summarize.mjs <path/to/http-cache-tests> <results.json> [--json] [--failures] [--all]
//
//   <path/to/http-cache-tests>  the installed package (the folder containing tests/)
//   <results.json>              output of `npm run --silent cli --base=...`
//   --json       print the counts (and, with --failures, the failure list) as JSON
//   --failures   list failing required and optimal tests with their failure message
//   --all        also count `browser_only` tests (the CLI never runs them, so they
//                would always show up as "untested"); excluded by default
//
// Each result is classified exactly like the suite's own results page
// (determineTestResult() in lib/display.mjs of http-cache-tests 0.4.5):
//   1. no entry in the results                      -> untested
//   2. any depends_on test not pass/yes (recursive)  -> dependency_fail (not a failure)
//   3. ["Setup", "retry"]                            -> retry
//   4. ["Setup", <msg>]                              -> setup_fail
//   5. result === false                              -> harness_fail (the CLI never emits this)
//   6. kind required (or no kind): true -> pass, anything else -> fail
//      kind optimal:               true -> pass, anything else -> optional_fail
//      kind check:                 true -> yes,  anything else -> no
// Note that errors other than Assertion/Setup (e.g. node-fetch "FetchError")
// fall through to rule 6 and therefore count as failures, as on the results page.
// Newer (git) versions of the suite keep this function in test-engine/lib/results.mjs
// (and add ["AbortError", ...] -> harness_fail); when that module exists in the given
// package it is imported and used as-is instead of the transcription below.
// No npm dependencies; needs Node >= 14.8 (ESM, top-level await).

import fs from 'fs'
import path from 'path'
import { pathToFileURL } from 'url'

const USAGE = 'usage: node summarize.mjs <path/to/http-cache-tests> <results.json> [--json] [--failures] [--all]'

const args = process.argv.slice(2)
const flags = new Set(args.filter(a => a.startsWith('--')))
const positional = args.filter(a => !a.startsWith('--'))
for (const f of flags) {
  if (!['--json', '--failures', '--all', '--help'].includes(f)) {
    console.error(`unknown option ${f}\n${USAGE}`)
    process.exit(2)
  }
}
if (flags.has('--help')) {
  console.log(USAGE)
  process.exit(0)
}
if (positional.length !== 2) {
  console.error(USAGE)
  process.exit(2)
}
const [pkgDir, resultsFile] = positional
const asJson = flags.has('--json')
const showFailures = flags.has('--failures')
const includeBrowserOnly = flags.has('--all')

// Load the test suites the same way index.html / cli.mjs do: tests/index.mjs + surrogate-control.
async function loadSuites (dir) {
  const testsDir = path.resolve(dir, 'tests')
  if (!fs.existsSync(path.join(testsDir, 'index.mjs'))) {
    console.error(`${dir}: no tests/index.mjs here; pass the http-cache-tests package folder`)
    process.exit(2)
  }
  const base = (await import(pathToFileURL(path.join(testsDir, 'index.mjs')).href)).default
  const suites = [...base]
  const surrogatePath = path.join(testsDir, 'surrogate-control.mjs')
  if (fs.existsSync(surrogatePath)) {
    const surrogate = (await import(pathToFileURL(surrogatePath).href)).default
    if (!suites.includes(surrogate)) suites.push(surrogate)
  }
  return suites
}

const suites = await loadSuites(pkgDir)
let results
try {
  results = JSON.parse(fs.readFileSync(resultsFile, 'utf8'))
} catch (err) {
  console.error(`cannot read results ${resultsFile}: ${err.message}`)
  process.exit(2)
}

const testsById = new Map()
for (const suite of suites) {
  for (const test of suite.tests) testsById.set(test.id, { ...test, suiteName: suite.name })
}

// --- classification ---
// Prefer the suite's own pure classifier when the package ships one (git layout).
let classify
const ownResults = path.resolve(pkgDir, 'test-engine', 'lib', 'results.mjs')
if (fs.existsSync(ownResults)) {
  const own = await import(pathToFileURL(ownResults).href)
  const names = new Map(Object.entries(own.resultTypes).map(([name, v]) => [v, name]))
  classify = testId => names.get(own.determineTestResult(suites, testId, results))
} else {
  classify = classify045
}

// A transcription of determineTestResult() in lib/display.mjs (http-cache-tests 0.4.5).
const PASS_TYPES = new Set(['pass', 'yes'])
const memo = new Map()
function classify045 (testId) {
  if (memo.has(testId)) return memo.get(testId)
  const test = testsById.get(testId)
  if (test === undefined) throw new Error(`Cannot find test ${testId}`)
  const result = results[testId]
  let cls
  if (result === undefined) {
    cls = 'untested'
  } else if (test.depends_on !== undefined &&
             test.depends_on.some(dep => !PASS_TYPES.has(classify045(dep)))) {
    cls = 'dependency_fail'
  } else if (result[0] === 'Setup') {
    cls = result[1] === 'retry' ? 'retry' : 'setup_fail'
  } else if (result === false && result[0] !== 'Assertion') {
    cls = 'harness_fail'
  } else if (test.kind === 'required' || test.kind === undefined) {
    cls = result === true ? 'pass' : 'fail'
  } else if (test.kind === 'optimal') {
    cls = result === true ? 'pass' : 'optional_fail'
  } else if (test.kind === 'check') {
    cls = result === true ? 'yes' : 'no'
  } else {
    throw new Error(`Unrecognised test kind ${test.kind}`)
  }
  memo.set(testId, cls)
  return cls
}

// --- counting ---
const KINDS = ['required', 'optimal', 'check']
const COLS = ['passed', 'failed', 'setup_fail', 'retry', 'harness_fail', 'dependency_fail', 'untested', 'total']
const BUCKET = {
  pass: 'passed',
  yes: 'passed',
  fail: 'failed',
  optional_fail: 'failed',
  no: 'failed',
  setup_fail: 'setup_fail',
  retry: 'retry',
  harness_fail: 'harness_fail',
  dependency_fail: 'dependency_fail',
  untested: 'untested'
}
const counts = {}
for (const k of KINDS) counts[k] = Object.fromEntries(COLS.map(c => [c, 0]))
const failures = []
let skippedBrowserOnly = 0
for (const suite of suites) {
  for (const test of suite.tests) {
    if (test.browser_only === true && !includeBrowserOnly) {
      skippedBrowserOnly++
      continue
    }
    const kind = test.kind || 'required'
    const cls = classify(test.id)
    counts[kind][BUCKET[cls]]++
    counts[kind].total++
    if (kind !== 'check' && ['fail', 'optional_fail', 'setup_fail', 'retry', 'harness_fail'].includes(cls)) {
      const r = results[test.id]
      failures.push({
        id: test.id,
        kind,
        result: cls,
        name: test.name,
        error: Array.isArray(r) ? r[0] : undefined,
        message: Array.isArray(r) && typeof r[1] === 'string' ? r[1] : undefined
      })
    }
  }
}
const extraIds = Object.keys(results).filter(id => !testsById.has(id))

// --- output ---
if (asJson) {
  const out = { counts, browser_only_excluded: skippedBrowserOnly, unknown_result_ids: extraIds }
  if (showFailures) out.failures = failures
  console.log(JSON.stringify(out, null, 2))
  process.exit(0)
}

const header = ['kind', ...COLS]
const rows = KINDS.map(k => [k, ...COLS.map(c => String(counts[k][c]))])
const widths = header.map((h, i) => Math.max(h.length, ...rows.map(r => r[i].length)))
const fmt = r => r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  ')
console.log(fmt(header))
console.log(widths.map(w => '-'.repeat(w)).join('  '))
for (const r of rows) console.log(fmt(r))
console.log('')
console.log('passed = pass (check: "yes"); failed = fail / optional fail (check: "no");')
console.log('dependency_fail = a depends_on test did not pass (not a failure); untested = no result.')
if (skippedBrowserOnly) console.log(`${skippedBrowserOnly} browser_only tests excluded (use --all to count them).`)
if (extraIds.length) console.log(`${extraIds.length} result id(s) not in this test suite, ignored: ${extraIds.join(', ')}`)

if (showFailures) {
  for (const kind of ['required', 'optimal']) {
    const list = failures.filter(f => f.kind === kind)
    console.log('')
    console.log(`== ${kind}: ${list.length} not passing (excluding dependency failures and untested)`)
    for (const f of list) {
      console.log(`[${f.result}] ${f.id} - ${f.name}`)
      if (f.message !== undefined) console.log(`    ${f.error}: ${f.message}`)
    }
  }
}
process.exit(0)
