/**
 * Grafana provisioning: the data sources, with fixed uids so dashboards (issue #7)
 * can refer to them on every target.
 */
export const DATASOURCE_UIDS = { prometheus: 'cdn-prometheus', loki: 'cdn-loki' } as const;

export function renderGrafanaDatasources(o: { prometheusUrl: string; lokiUrl: string }): string {
  return `# Rendered by the CDN's renderer: do not edit, change the stack instead.
apiVersion: 1
datasources:
  - name: Prometheus
    uid: ${DATASOURCE_UIDS.prometheus}
    type: prometheus
    access: proxy
    url: ${JSON.stringify(o.prometheusUrl)}
    isDefault: true
    editable: false
  - name: Loki
    uid: ${DATASOURCE_UIDS.loki}
    type: loki
    access: proxy
    url: ${JSON.stringify(o.lokiUrl)}
    editable: false
`;
}

/** Where Grafana reads the dashboard JSON files (observability/dashboards/*.json) in its container. */
export const GRAFANA_DASHBOARDS_DIR = '/etc/grafana/dashboards/cdn';
/** Where the provisioning files go in Grafana's container. */
export const GRAFANA_PROVISIONING = {
  datasources: '/etc/grafana/provisioning/datasources/cdn.yaml',
  dashboards: '/etc/grafana/provisioning/dashboards/cdn.yaml',
} as const;

/**
 * The dashboards provider: Grafana loads every JSON file of `path` into the "CDN"
 * folder and keeps them as the repository has them (no edits from the UI survive).
 * Not under /var/lib/grafana: that is the data volume, which would shadow the files.
 */
export function renderGrafanaDashboardsProvider(o: { path?: string } = {}): string {
  return `# Rendered by the CDN's renderer: do not edit, change the stack instead.
apiVersion: 1
providers:
  - name: cdn
    folder: CDN
    type: file
    disableDeletion: true
    updateIntervalSeconds: 30
    allowUiUpdates: false
    options:
      path: ${JSON.stringify(o.path ?? GRAFANA_DASHBOARDS_DIR)}
      foldersFromFilesStructure: false
`;
}
