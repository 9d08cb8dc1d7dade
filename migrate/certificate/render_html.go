package certificate

import (
	"html/template"
	"io"
)

// RenderHTML writes certificate.html for env: a self-contained page (no scripts, no
// external resources) with a printable summary page a compliance officer signs, then
// the per-site tables. It shows what the signed payload says; it verifies nothing.
func RenderHTML(w io.Writer, env *Envelope) error {
	v, err := buildView(env)
	if err != nil {
		return err
	}
	return htmlTemplate.Execute(w, v)
}

var htmlTemplate = template.Must(template.New("certificate").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Certificate of Migration and Deletion — {{.Migration}}</title>
<style>
  @page { size: A4; margin: 14mm; }
  :root { --ink: #1b2430; --muted: #5b6673; --rule: #d5dbe2; --band: #f3f5f8; --ok: #1d6b3a; --bad: #a3261b; }
  * { box-sizing: border-box; }
  body { font: 10.5pt/1.4 "Helvetica Neue", Helvetica, Arial, sans-serif; color: var(--ink); margin: 0; background: #e9edf1; }
  .page { background: #fff; max-width: 960px; margin: 12px auto; padding: 40px 44px 32px; box-shadow: 0 1px 4px rgba(0,0,0,.15); }
  @media print { body { background: #fff; } .page { box-shadow: none; margin: 0; padding: 0; max-width: none; } .break { break-before: page; } }
  header { display: flex; justify-content: space-between; align-items: flex-end; border-bottom: 2px solid var(--ink); padding-bottom: 6px; }
  h1 { font-size: 19pt; margin: 0; letter-spacing: .2px; }
  header .meta { text-align: right; color: var(--muted); font-size: 9pt; }
  h2 { font-size: 11pt; text-transform: uppercase; letter-spacing: .8px; color: var(--muted); margin: 16px 0 6px; border-bottom: 1px solid var(--rule); padding-bottom: 2px; }
  h3 { font-size: 11.5pt; margin: 14px 0 4px; }
  .banner { margin: 12px 0 4px; padding: 10px 14px; border-radius: 4px; color: #fff; }
  .banner.ok { background: var(--ok); } .banner.bad { background: var(--bad); }
  .banner .word { font-size: 15pt; font-weight: bold; letter-spacing: 1px; }
  .banner p { margin: 4px 0 0; }
  .banner ul { margin: 6px 0 0 18px; padding: 0; }
  table { border-collapse: collapse; width: 100%; font-size: 9pt; }
  th { text-align: left; background: var(--band); font-weight: 600; border-bottom: 1px solid var(--rule); }
  th, td { padding: 3px 6px; vertical-align: top; }
  td { border-bottom: 1px solid var(--rule); }
  td.n, th.n { text-align: right; white-space: nowrap; }
  .grid { display: grid; grid-template-columns: 1fr 1fr; column-gap: 18px; }
  .grid.narrow { grid-template-columns: 30% 1fr; }
  td.nw { white-space: nowrap; }
  td.mono { white-space: nowrap; }
  td.wrap, .wrap { overflow-wrap: anywhere; word-break: break-all; }
  td.mono.wrap { white-space: normal; }
  table.fixed { table-layout: fixed; }
  .evidence p { margin: 2px 0 4px; font-size: 9pt; }
  .evidence h4 { font-size: 9pt; margin: 8px 0 2px; }
  .finding { color: var(--bad); font-weight: 600; }
  dl { display: grid; grid-template-columns: max-content 1fr; margin: 0; font-size: 9pt; }
  dl.two { grid-template-columns: max-content 1fr max-content 1fr; }
  dl.two dd { padding-right: 14px; }
  dt { color: var(--muted); font-weight: 600; padding: 2px 12px 2px 0; border-bottom: 1px solid var(--band); }
  dd { margin: 0; padding: 2px 0; border-bottom: 1px solid var(--band); overflow-wrap: anywhere; }
  .mono, code { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 8.5pt; overflow-wrap: anywhere; }
  .verify { background: var(--band); border-left: 3px solid var(--ink); padding: 8px 12px; font-size: 9pt; }
  .verify code.cmd { display: block; background: #fff; border: 1px solid var(--rule); padding: 5px 8px; margin: 4px 0 6px; font-size: 9pt; }
  .verify ul { margin: 2px 0 4px 18px; padding: 0; }
  .sign { display: grid; grid-template-columns: 1fr 1fr; column-gap: 36px; margin-top: 30px; font-size: 9pt; }
  .sign .row { display: grid; grid-template-columns: 1fr 28%; column-gap: 14px; }
  .sign .line { border-bottom: 1px solid var(--ink); height: 34px; }
  .sign .label { color: var(--muted); font-weight: 600; font-size: 8pt; margin-top: 2px; }
  .sign .who { margin-top: 1px; }
  .pending { color: var(--bad); font-weight: 600; }
  footer { color: var(--muted); font-size: 8pt; margin-top: 14px; border-top: 1px solid var(--rule); padding-top: 4px; }
</style>
</head>
<body>
<div class="page">
<header>
  <h1>Certificate of Migration and Deletion</h1>
  <div class="meta">Migration <strong>{{.Migration}}</strong><br>Generated {{.Generated}}</div>
</header>

{{if .Complete}}
<div class="banner ok"><div class="word">COMPLETE</div><p>{{.Headline}}</p></div>
{{else}}
<div class="banner bad"><div class="word">INCOMPLETE</div><p>{{.Headline}}</p>
<ul>{{range .Reasons}}<li>{{.}}</li>{{end}}</ul></div>
{{end}}

<h2>Migration</h2>
<dl class="two">{{range .Facts}}<dt>{{.K}}</dt><dd>{{.V}}</dd>{{end}}</dl>

<h2>Sites (originals)</h2>
<table>
<tr><th>Site</th><th>Role</th><th>Location</th><th>Region</th><th class="n">Replicas</th><th class="n">Bytes</th><th class="n">Deleted</th><th class="n">Awaiting purge</th><th class="n">Remaining</th><th>Status</th></tr>
{{range .Sites}}<tr><td><strong>{{.Name}}</strong></td><td>{{.Role}}</td><td class="mono">{{.URI}}{{if .PlannedFrom}}<br><small>{{.PlannedFrom}}</small>{{end}}{{if .Recoverable}}<br><small>{{.Recoverable}}</small>{{end}}</td><td>{{.Region}}</td><td class="n">{{.Replicas}}</td><td class="n">{{.Bytes}}</td><td class="n">{{.Erased}}</td><td class="n">{{.Soft}}</td><td class="n">{{.Remaining}}</td><td class="nw">{{.StatusLabel}}</td></tr>
{{end}}</table>

<div class="grid narrow">
<div>
<h2>Records by status</h2>
<table><tr><th>Status</th><th class="n">Records</th><th class="n">Bytes</th></tr>
{{range .Statuses}}<tr><td>{{.Status}}</td><td class="n">{{.Records}}</td><td class="n">{{.Bytes}}</td></tr>{{end}}
</table>
</div>
<div>
<h2>Integrity</h2>
<dl>{{range .Integrity}}<dt>{{.K}}</dt><dd{{if ne .K "Tree size"}} class="mono"{{end}}>{{.V}}</dd>{{end}}</dl>
</div>
</div>

<h2>Deletion stages</h2>
<table>
<tr><th>Stage</th><th>Sites</th><th>Mode</th><th>Sample</th><th>Started (UTC)</th><th>Finished (UTC)</th><th>Purged (UTC)</th><th class="n">Deleted / scope</th><th>State</th></tr>
{{range .Stages}}<tr><td><strong>{{.Name}}</strong></td><td>{{.Sites}}</td><td>{{.Mode}}</td><td>{{.Sample}}</td><td>{{.Started}}</td><td>{{.Finished}}</td><td>{{.Purged}}</td><td class="n">{{.Deleted}} / {{.Scope}}</td><td>{{.State}}</td></tr>
{{else}}<tr><td colspan="9">No deletion stages.</td></tr>{{end}}
</table>

<h2>Evidence</h2>
<div class="evidence">
<h4>Journal of ferry's own requests</h4>
<p>{{.Evidence.Journal}}</p>
{{if .Evidence.JournalHeads}}<table class="fixed">
<tr><th style="width:30%">Stream</th><th class="n" style="width:12%">Entries</th><th>Head (SHA-256 of the last line)</th></tr>
{{range .Evidence.JournalHeads}}<tr><td class="wrap">{{.Stream}}</td><td class="n">{{.Count}}</td><td class="mono wrap" title="{{.Head}}">{{.HeadShort}}</td></tr>{{end}}
</table>{{end}}
<h4>Access-log audit</h4>
<p{{if .Evidence.AuditBad}} class="finding"{{end}}>{{.Evidence.Audit}}</p>
{{if .Evidence.AuditFindings}}<table class="fixed">
<tr><th style="width:13%">Kind</th><th style="width:22%">Identity</th><th style="width:15%">Time (UTC)</th><th style="width:12%">Store</th><th>Key</th></tr>
{{range .Evidence.SummaryFindings}}<tr><td>{{.Kind}}</td><td class="wrap">{{.Identity}}</td><td>{{.Time}}</td><td class="wrap">{{.Store}}</td><td class="mono wrap">{{.Key}}</td></tr>{{end}}
</table>{{if .AuditMoreSummary}}<p>{{.AuditMoreSummary}}</p>{{end}}{{end}}
<h4>Cryptographic erase (declared by the operator; ferry does not call the KMS)</h4>
{{if .Evidence.CryptoErase}}<table class="fixed">
<tr><th style="width:14%">Site</th><th>Key ID</th><th style="width:19%">Key deletion date</th><th style="width:11%">Status</th></tr>
{{range .Evidence.CryptoErase}}<tr><td>{{.Site}}</td><td class="mono wrap">{{.KeyID}}</td><td>{{.Date}}</td><td>{{.Status}}</td></tr>{{end}}
</table>{{else}}<p>{{.Evidence.CryptoNone}}</p>{{end}}
<h4>Replicas retained by their sites</h4>
<p>{{.Evidence.Retained}}</p>
{{if .Evidence.RetainedBySite}}<ul style="margin:0 0 4px 18px;padding:0;font-size:9pt">{{range .Evidence.RetainedBySite}}<li class="wrap">{{.}}</li>{{end}}</ul>{{end}}
</div>

<h2>Sanitization record (NIST SP 800-88 Rev. 2)</h2>
<dl class="two">{{range .Sanitization}}<dt>{{.K}}</dt><dd>{{.V}}</dd>{{end}}</dl>
<dl>{{range .SanitizationLong}}<dt>{{.K}}</dt><dd>{{.V}}</dd>{{end}}</dl>

<h2>Signatures</h2>
<table>
<tr><th>Signer</th><th>Role</th><th>Key ID (SHA-256 of the public key)</th><th>State</th></tr>
{{range .Signers}}<tr><td>{{.Name}}</td><td>{{.Role}}</td><td class="mono">{{.KeyID}}</td><td{{if eq .State "pending"}} class="pending"{{end}}>{{.State}}</td></tr>{{end}}
</table>

<h2>How to verify</h2>
<div class="verify">
Anyone can check this certificate offline, with the files handed over with it and the signer's public key:
<code class="cmd">{{.VerifyCommand}}</code>
It checks
<ul>{{range .VerifyChecks}}<li>{{.}}</li>{{end}}</ul>
{{.ProveText}}
</div>

<div class="sign">
<div class="row"><div><div class="line"></div><div class="label">Performed by</div><div class="who">{{.PerformedBy}}{{if .PerformedTitle}}, {{.PerformedTitle}}{{end}}</div></div><div><div class="line"></div><div class="label">Date</div></div></div>
<div class="row"><div><div class="line"></div><div class="label">Approved by</div><div class="who">{{.ApprovedBy}}{{if .ApprovedTitle}}, {{.ApprovedTitle}}{{end}}</div></div><div><div class="line"></div><div class="label">Date</div></div></div>
</div>
<footer>This page renders the signed certificate.json; the signed file, not this page, is the record. Merkle root {{.Root}}.</footer>
</div>

<div class="page break">
<header><h1>Site details</h1><div class="meta">Migration <strong>{{.Migration}}</strong></div></header>
{{range .SiteDetails}}
<h3>{{.Row.Name}} <span style="font-weight:normal;color:#5b6673">— {{.Row.Role}}, {{.Row.Region}}</span></h3>
<div class="mono">{{.Row.URI}}</div>
<div class="grid">
<div>
<table>
<tr><th>Originals</th><th class="n">Count</th><th class="n">Bytes</th></tr>
<tr><td>Replicas in the manifest</td><td class="n">{{.Row.Replicas}}</td><td class="n">{{.Row.Bytes}}</td></tr>
<tr><td>Deleted for good</td><td class="n">{{.Row.Erased}}</td><td class="n">{{.Row.ErasedBytes}}</td></tr>
<tr><td>Soft-deleted, awaiting purge</td><td class="n">{{.Row.Soft}}</td><td class="n"></td></tr>
<tr><td>Remaining at the site</td><td class="n">{{.Row.Remaining}}</td><td class="n">{{.Row.RemainingBytes}}</td></tr>
<tr><td>Confirmed absent after delete</td><td class="n">{{.Row.Confirmed}}</td><td class="n"></td></tr>
<tr><td>Deleted, not confirmed absent</td><td class="n">{{.Row.Unconfirmed}}</td><td class="n"></td></tr>
<tr><td>Vanished without ferry deleting them</td><td class="n">{{.Row.Missing}}</td><td class="n"></td></tr>
</table>
</div>
<div>
<table>
<tr><th>Replica state</th><th class="n">Replicas</th><th class="n">Bytes</th></tr>
{{range .States}}<tr><td>{{.Status}}</td><td class="n">{{.Records}}</td><td class="n">{{.Bytes}}</td></tr>{{else}}<tr><td colspan="3">No replicas.</td></tr>{{end}}
</table>
</div>
</div>
<table style="margin-top:6px">
<tr><th>Stage</th><th>Mode</th><th>Sample</th><th>Started (UTC)</th><th>Finished (UTC)</th><th>Purged (UTC)</th><th class="n">Scope</th><th class="n">Deleted</th><th class="n">Failed</th><th>State</th></tr>
{{range .Stages}}<tr><td>{{.Name}}</td><td>{{.Mode}}</td><td>{{.Sample}}</td><td>{{.Started}}</td><td>{{.Finished}}</td><td>{{.Purged}}</td><td class="n">{{.Scope}}</td><td class="n">{{.Deleted}}</td><td class="n">{{.Failed}}</td><td>{{.State}}</td></tr>
{{else}}<tr><td colspan="10">No deletion stage covers this site.</td></tr>{{end}}
</table>
{{end}}
</div>

<div class="page break">
<header><h1>Evidence and retention</h1><div class="meta">Migration <strong>{{.Migration}}</strong></div></header>
<h3>Journal heads</h3>
<p>{{.Evidence.Journal}}</p>
{{if .Evidence.JournalHeads}}<table class="fixed">
<tr><th style="width:28%">Stream</th><th class="n" style="width:10%">Entries</th><th>Head (SHA-256 of the last line)</th></tr>
{{range .Evidence.JournalHeads}}<tr><td class="wrap">{{.Stream}}</td><td class="n">{{.Count}}</td><td class="mono wrap">{{.Head}}</td></tr>{{end}}
</table>{{end}}
<h3>Access-log audit</h3>
<p{{if .Evidence.AuditBad}} class="finding"{{end}}>{{.Evidence.Audit}}</p>
{{if .Evidence.AuditFindings}}<table class="fixed">
<tr><th style="width:12%">Kind</th><th style="width:20%">Identity</th><th style="width:14%">Time (UTC)</th><th style="width:10%">Store</th><th style="width:9%">Operation</th><th>Key</th></tr>
{{range .Evidence.AuditFindings}}<tr><td>{{.Kind}}</td><td class="wrap">{{.Identity}}</td><td>{{.Time}}</td><td class="wrap">{{.Store}}</td><td>{{.Operation}}</td><td class="mono wrap">{{.Key}}</td></tr>{{end}}
</table>{{if .Evidence.AuditMore}}<p>{{.Evidence.AuditMore}}</p>{{end}}{{end}}
<h3>Cryptographic erase</h3>
<p>NIST SP 800-88 Rev. 2 "cryptographic erase": the site's data was encrypted under the key named, and destroying the key sanitizes every copy encrypted under it. These entries are as the operator declared them in the spec; ferry did not contact the key management service. Status is the declared date against the certificate's generation time.</p>
{{if .Evidence.CryptoErase}}<table class="fixed">
<tr><th style="width:12%">Site</th><th style="width:38%">Key ID</th><th style="width:16%">Key deletion date</th><th style="width:10%">Status</th><th>Note</th></tr>
{{range .Evidence.CryptoErase}}<tr><td>{{.Site}}</td><td class="mono wrap">{{.KeyID}}</td><td>{{.Date}}</td><td>{{.Status}}</td><td class="wrap">{{.Note}}</td></tr>{{end}}
</table>{{else}}<p>{{.Evidence.CryptoNone}}</p>{{end}}
<h3>Retained replicas</h3>
<p>{{.Evidence.Retained}}</p>
{{if .Evidence.RetainedRows}}<table class="fixed">
<tr><th style="width:12%">Site</th><th style="width:30%">Key</th><th style="width:14%">Version</th><th>Reason (as the site gave it)</th></tr>
{{range .Evidence.RetainedRows}}<tr><td>{{.Site}}</td><td class="mono wrap">{{.Key}}</td><td class="mono wrap">{{.Version}}</td><td class="wrap">{{.Reason}}</td></tr>{{end}}
</table>{{if .Evidence.RetainedMore}}<p>{{.Evidence.RetainedMore}}</p>{{end}}{{end}}
</div>
</body>
</html>
`))
