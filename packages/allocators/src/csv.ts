// The CSV reader and writer of the authors' layouts live in @layerquant/stats; re-exported for allocation-csv.ts.
export { columnIndex, field, formatCsv, formatNumber, integerField, numberField, readCsv, type CsvDocument, type CsvRecord } from '@layerquant/stats';
