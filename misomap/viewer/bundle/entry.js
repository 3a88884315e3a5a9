// The parts of OpenLayers, geotiff.js and proj4 the misomap viewer uses, as one global `misoOL`.
import Map from 'ol/Map.js';
import View from 'ol/View.js';
import TileLayer from 'ol/layer/WebGLTile.js';
import GeoTIFF from 'ol/source/GeoTIFF.js';
import VectorLayer from 'ol/layer/Vector.js';
import VectorSource from 'ol/source/Vector.js';
import GeoJSON from 'ol/format/GeoJSON.js';
import {Circle, Fill, Stroke, Style} from 'ol/style.js';
import ScaleLine from 'ol/control/ScaleLine.js';
import {defaults as defaultControls} from 'ol/control/defaults.js';
import {register} from 'ol/proj/proj4.js';
import {get as getProjection, transform} from 'ol/proj.js';
import {getRenderPixel} from 'ol/render.js';
import {unByKey} from 'ol/Observable.js';
import proj4 from 'proj4';
import {fromUrl} from 'geotiff';

globalThis.misoOL = {
  Map, View, TileLayer, GeoTIFF, VectorLayer, VectorSource, GeoJSON, Circle, Fill, Stroke, Style,
  ScaleLine, defaultControls, register, getProjection, transform, getRenderPixel, unByKey, proj4,
  fromUrl,
};
